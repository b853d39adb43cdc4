"""The analytic leak of the classifier's input, and the feature objective built on it.

A classifier whose logits are ``W r + b`` (the ANN LeNets: ``r`` = penultimate activations; the
SNN twins average ``W s_t + b`` over T, so ``r`` = the mean spike rate of the classifier input)
has, for one sample, ``dL/dW = delta r^T`` and ``dL/db = delta``: every row j with
``db[j] != 0`` gives ``dW[j] / db[j] == r`` exactly. :func:`recovered_features` reads ``r``
off a captured update; :func:`classifier_input` computes ``r(x)`` for a dummy through the
victim's own forward (a hook on its last ``nn.Linear``), so an attack can invert it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from attacks.types import PublicInfo
from attacks.victim import last_linear


def recovered_features(
    model: nn.Module, update: Mapping[str, torch.Tensor], public: PublicInfo
) -> torch.Tensor:
    """The classifier input ``r`` [1, F] of the one private sample behind a FedSGD gradient
    ``update`` (or a FedAvg update of one local step, in gradient form): the least-squares
    solution of ``dW[j] = db[j] r`` over the rows, i.e. ``sum_j db[j] dW[j] / sum_j db[j]^2``,
    which weights rows by ``db[j]^2`` so that rows with tiny bias gradients barely count; per
    feature over the rows whose entry is nonzero (the adaptive read of pruned updates).

    Raises ValueError naming what is missing: a last linear layer with bias, its gradients in
    the update, one sample and one local step per update, a row with ``db[j] != 0``.
    """
    if public.samples != 1 or (
        public.update != "gradient" and public.local_steps * public.local_epochs != 1
    ):
        raise ValueError(
            "the rate leak dW[j]/db[j] needs the gradient of one sample: one private sample and "
            f"one local step per update, got {public.samples} sample(s), update "
            f"{public.update!r}, local_steps={public.local_steps}, "
            f"local_epochs={public.local_epochs}"
        )
    name, fc = last_linear(model)
    if fc.bias is None:
        raise ValueError(
            f"the rate leak needs a bias in the classifier layer: {type(model).__name__}.{name} "
            "is a linear layer without bias"
        )
    keys = (f"{name}.weight", f"{name}.bias")
    missing = [k for k in keys if k not in update]
    if missing:
        raise ValueError(f"the rate leak needs the classifier's gradients: update lacks {missing}")
    dw, db = (update[k].to(fc.weight.dtype) for k in keys)
    if dw.shape != fc.weight.shape or db.shape != fc.bias.shape:
        raise ValueError(
            f"classifier gradients {tuple(dw.shape)}/{tuple(db.shape)} do not match "
            f"{name}'s weight {tuple(fc.weight.shape)} and bias {tuple(fc.bias.shape)}"
        )
    if not (db * db).sum() > 0:
        raise ValueError(
            f"the rate leak needs a row with a nonzero bias gradient; {name}.bias's is all zero"
        )
    # Per feature, only the rows whose entry was sent: a zero dW[j, k] with db[j] != 0 means
    # r_k = 0 (then the whole column is zero) or an entry a defence dropped (top-k pruning,
    # quantisation to 0), which must not pull r_k to 0. Without such a defence this is the
    # plain least-squares solution.
    sent = (dw != 0).to(dw.dtype)
    weight = sent.T @ (db * db)
    features = torch.where(weight > 0, (db @ dw) / weight.clamp_min(torch.finfo(dw.dtype).tiny), 0)
    return features.unsqueeze(0)


def classifier_input(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What the victim's last ``nn.Linear`` receives for ``inputs``, [B, F]: time-major inputs
    [T, B, F] (spiking victims) are averaged over T, the rate the identity recovers."""
    name, fc = last_linear(model)
    seen: list[torch.Tensor] = []
    handle = fc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model(inputs)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0].dim() not in (2, 3):
        raise ValueError(
            f"{type(model).__name__}.{name} must see one [B, F] or [T, B, F] input per forward; "
            f"got {[tuple(s.shape) for s in seen]}"
        )
    return seen[0].mean(0) if seen[0].dim() == 3 else seen[0]
