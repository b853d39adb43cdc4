"""Rebuild the victim model from public information, as an eavesdropper can."""

from __future__ import annotations

import torch
from torch import nn

from attacks.local_update import observed_update
from attacks.types import Capture
from models import SPIKING
from models.public import model_for


def victim_from_capture(capture: Capture) -> nn.Module:
    """Victim architecture at the captured global weights, with gradients off for weights."""
    model = model_for(capture.public).to(capture.device)
    model.load_state_dict({k: v.clone() for k, v in capture.global_state.items()})
    model.eval()  # no dropout/BN in the LeNets; eval keeps that true for later models
    return model


def is_spiking(capture: Capture) -> bool:
    return capture.public.arch in SPIKING


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """Name and module of the classifier layer (the last ``nn.Linear``)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no linear layer (the classifier that iDLG's label "
            "rule and the rate leak read)"
        )
    return found[-1]


def target_gradients(model: nn.Module, capture: Capture) -> list[torch.Tensor]:
    """Captured update in gradient form (see ``attacks.local_update.observed_update``), in
    the order of ``model.named_parameters()``; checks names and shapes."""
    names = [n for n, _ in model.named_parameters()]
    missing = sorted(set(names) - set(capture.update))
    if missing:
        raise ValueError(f"captured update lacks parameters {missing}")
    update = observed_update(capture)
    grads = []
    for name, p in model.named_parameters():
        if name not in update:
            raise ValueError(f"the global model sent lacks parameter {name!r}")
        g = update[name].to(p.dtype)
        if g.shape != p.shape:
            raise ValueError(
                f"update {name!r} has shape {tuple(g.shape)}, expected {tuple(p.shape)}"
            )
        grads.append(g)
    return grads
