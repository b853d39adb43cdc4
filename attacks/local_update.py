"""The update a client sends for given data, as a differentiable function of that data.

FedSGD: the gradient of one batch. FedAvg: the client's local SGD steps unrolled (as in
Geiping et al. 2020 and breaching's multi-step user), so an attack matches what the client
really sent instead of pretending a weight difference is a gradient. Both are expressed as
a gradient-like quantity: FedAvg's lr-normalised displacement (w0 - w_K) / lr, which
equals the gradient for one local step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call

from attacks.types import Capture, PublicInfo
from models.public import sample_dim

# loss of the victim's logits on the given rows (samples) of the dummy batch
TaskLoss = Callable[[torch.Tensor, slice], torch.Tensor]


def observed_update(capture: Capture) -> dict[str, torch.Tensor]:
    """The captured update in gradient form: FedSGD's gradient as sent, FedAvg's new weights
    or delta turned into (w0 - w_K) / lr. Entries without a global weight are left out."""
    pub = capture.public
    if pub.update == "gradient":
        return dict(capture.update)
    out = {}
    for name, value in capture.update.items():
        if name not in capture.global_state:
            continue
        w0 = capture.global_state[name]
        if value.shape != w0.shape:
            raise ValueError(
                f"update {name!r} has shape {tuple(value.shape)}, expected {tuple(w0.shape)}"
            )
        step = (w0 - value.to(w0.dtype)) if pub.update == "weights" else -value.to(w0.dtype)
        out[name] = step / pub.local_lr
    return out


def simulated_update(
    model: nn.Module,
    params: list[torch.Tensor],
    inputs: torch.Tensor,
    task_loss: TaskLoss,
    public: PublicInfo,
    create_graph: bool = True,
) -> list[torch.Tensor]:
    """What the client would send for ``inputs``, in the order of ``params`` (the model's
    parameters) and in :func:`observed_update`'s gradient form.

    FedAvg: ``local_epochs`` passes over ``local_steps`` consecutive mini-batches of
    ``batch_size`` rows, plain SGD at ``local_lr`` - the client's own schedule.
    """
    if public.update == "gradient":
        loss = task_loss(model(inputs), slice(None))
        return list(torch.autograd.grad(loss, params, create_graph=create_graph))
    names = [name for name, _ in model.named_parameters()]
    weights: Mapping[str, torch.Tensor] = dict(zip(names, params, strict=True))
    dim, size, lr = sample_dim(inputs), public.batch_size, public.local_lr
    if inputs.shape[dim] != public.samples:
        raise ValueError(
            f"FedAvg update of {public.samples} samples (local_steps={public.local_steps} x "
            f"batch_size={size}), got inputs with {inputs.shape[dim]}"
        )
    for _ in range(public.local_epochs):
        for step in range(public.local_steps):
            rows = slice(step * size, (step + 1) * size)
            logits = functional_call(model, dict(weights), (inputs.narrow(dim, rows.start, size),))
            grads = torch.autograd.grad(
                task_loss(logits, rows), list(weights.values()), create_graph=create_graph
            )
            weights = {
                name: next_weight(w, g, lr, create_graph)
                for (name, w), g in zip(weights.items(), grads, strict=True)
            }
    return [(w0 - weights[name]) / lr for name, w0 in zip(names, params, strict=True)]


def next_weight(w: torch.Tensor, g: torch.Tensor, lr: float, graph: bool) -> torch.Tensor:
    """One SGD step; without a graph the new weight is a fresh leaf for the next step."""
    new = torch.add(w, g, alpha=-lr)  # as torch.optim.SGD updates: w + (-lr) * g
    return new if graph else new.detach().requires_grad_(True)
