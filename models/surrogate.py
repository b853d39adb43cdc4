"""Spike function with an ATan surrogate gradient that supports double backward and vmap.

SpikingJelly's built-in ``surrogate.ATan`` is an ``autograd.Function`` without
``setup_context``, so ``torch.func`` cannot trace it. Gradient-matching attacks need the
gradient of a gradient, so we write the same surrogate as a straight-through expression:
the forward value is the Heaviside step, the backward is d/dx [atan(pi/2*alpha*x)/pi + 1/2]
= alpha/2 / (1 + (pi/2*alpha*x)^2), exactly SpikingJelly's ATan.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def atan_spike(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Heaviside(x) in the forward pass, ATan surrogate derivative in every backward pass."""
    soft = torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5
    return (x >= 0).to(x.dtype) + (soft - soft.detach())


class StraightThroughATan(nn.Module):
    """Drop-in ``surrogate_function`` for SpikingJelly neurons (same alpha default, 2.0)."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return atan_spike(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
