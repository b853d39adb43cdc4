"""How the update a dummy produces is compared to the captured one: name -> loss function
``(simulated, target) -> scalar``, both in ``model.named_parameters()`` order."""

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


OBJECTIVES: dict[str, Objective] = {"l2": gradient_distance, "cosine": cosine_distance}
