"""Priors on the dummy: name -> function of the optimised dummy variable (images [B,C,H,W],
or frames [T,B,C,H,W]) returning a scalar; an attack adds ``weight * function(dummy)``."""

from __future__ import annotations

from collections.abc import Callable

import torch

Regulariser = Callable[[torch.Tensor], torch.Tensor]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Inverting Gradients' TV (their ``total_variation``): mean absolute difference of
    horizontal neighbours plus that of vertical neighbours, over every image or frame."""
    dx = torch.mean(torch.abs(x[..., :, :-1] - x[..., :, 1:]))
    dy = torch.mean(torch.abs(x[..., :-1, :] - x[..., 1:, :]))
    return dx + dy


REGULARISERS: dict[str, Regulariser] = {"tv": total_variation}
