"""How the update a dummy produces is compared to the captured one: name -> loss function
``(simulated, target) -> scalar``, both in ``model.named_parameters()`` order.

``features`` (in :data:`FEATURE_OBJECTIVES`) compares no gradients: it is fed the classifier
input the dummy produces and the one the update leaks (``attacks.components.features``), each
as a one-tensor list [N, F], and sums their squared differences per sample, averaged over the
N samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Objective = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]


def gradient_distance(
    dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]
) -> torch.Tensor:
    """DLG's loss: sum over layers of the squared l2 distance of gradients."""
    return sum(((d - t) ** 2).sum() for d, t in zip(dummy, target, strict=True))  # type: ignore[return-value]


def cosine_distance(dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverting Gradients' loss (Geiping et al. 2020, their ``reconstruction_costs`` with
    ``cost_fn="sim"``): 1 - cosine similarity of the whole flattened gradients."""
    dot = sum((d * t).sum() for d, t in zip(dummy, target, strict=True))
    norm_d = sum(d.pow(2).sum() for d in dummy)
    norm_t = sum(t.pow(2).sum() for t in target)
    return 1 - dot / norm_d.sqrt() / norm_t.sqrt()  # type: ignore[union-attr,return-value]


def feature_objective(
    dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The rate-leak attack's loss: squared differences of the classifier inputs [N, F],
    summed per sample and averaged over the N samples, so that each dummy weighs its error
    against a per-image regulariser (TV is a mean over images) as at N = 1, whatever N."""
    (d,), (t,) = dummy, target
    return ((d - t) ** 2).sum() / (d.shape[0] if d.dim() > 1 else 1)


OBJECTIVES: dict[str, Objective] = {
    "l2": gradient_distance,
    "cosine": cosine_distance,
    "features": feature_objective,
}
# Objectives of classifier inputs, not of updates (see the module docstring).
FEATURE_OBJECTIVES = frozenset({"features"})
