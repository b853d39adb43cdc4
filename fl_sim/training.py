"""What a client computes on its private batch (FedSGD): the cross-entropy gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def loss_gradient(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy of one batch, per parameter name."""
    params = dict(model.named_parameters())
    loss = F.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {name: g.detach() for name, g in zip(params, grads, strict=True)}


def sgd_step(
    state: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: float
) -> dict[str, torch.Tensor]:
    """w - lr * g by key; entries without a gradient (buffers) are kept unchanged."""
    return {k: (v - lr * grads[k].to(v.dtype)) if k in grads else v for k, v in state.items()}
