"""What a client computes on its private data: FedSGD's cross-entropy gradient, or
FedAvg's local SGD steps (with FedProx's proximal term when the server asks for one)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.public import sample_dim


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


def local_sgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    local_steps: int,
    local_epochs: int,
    lr: float,
    proximal_mu: float = 0.0,
) -> dict[str, torch.Tensor]:
    """FedAvg's client update, as a client runs it with ``torch.optim.SGD``: ``local_epochs``
    passes over ``local_steps`` consecutive mini-batches of ``batch_size`` (no shuffling,
    the schedule is public); ``images`` may be time-major event frames [T,B,C,H,W].
    A nonzero ``proximal_mu`` (FedProx) adds ``mu/2 * ||w - w_global||^2`` to every step's
    loss, ``w_global`` being the weights received. Returns the new state dict."""
    dim = sample_dim(images)
    if len(labels) != batch_size * local_steps or images.shape[dim] != len(labels):
        raise ValueError(
            f"need local_steps x batch_size = {local_steps * batch_size} samples, got "
            f"{len(labels)} labels and {images.shape[dim]} inputs"
        )
    params = list(model.parameters())
    anchor = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(local_epochs):
        for step in range(local_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            opt.zero_grad()
            batch = images.narrow(dim, rows.start, batch_size)
            loss = F.cross_entropy(model(batch), labels[rows])
            if proximal_mu:
                loss = loss + proximal_mu / 2 * proximal_term(params, anchor)
            loss.backward()
            opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def proximal_term(params: list[torch.Tensor], anchor: list[torch.Tensor]) -> torch.Tensor:
    """FedProx's ``||w - w_global||^2`` over all parameters."""
    return sum((p - a).pow(2).sum() for p, a in zip(params, anchor, strict=True))
