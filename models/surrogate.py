"""The spiking nonlinearity of the SNN victims: an ATan surrogate that supports double
backward and vmap, and the SpikingJelly neurons (IF or LIF) built with it.

SpikingJelly's built-in ``surrogate.ATan`` is an ``autograd.Function`` without
``setup_context``, so ``torch.func`` cannot trace it. Gradient-matching attacks need the
gradient of a gradient, so we write the same surrogate as a straight-through expression:
the forward value is the Heaviside step, the backward is d/dx [atan(pi/2*alpha*x)/pi + 1/2]
= alpha/2 / (1 + (pi/2*alpha*x)^2), exactly SpikingJelly's ATan.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from spikingjelly.activation_based import neuron
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


def _if_node(surrogate: nn.Module) -> nn.Module:
    return neuron.IFNode(surrogate_function=surrogate, detach_reset=True, step_mode="m")


def _lif_node(surrogate: nn.Module) -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate, detach_reset=True, step_mode="m")


# Multi-step neurons with a detached reset; the factory gets the surrogate function.
NEURONS: dict[str, Callable[[nn.Module], nn.Module]] = {"if": _if_node, "lif": _lif_node}


def check_neuron(name: str) -> None:
    """Raise ValueError for a neuron name that is not in :data:`NEURONS`."""
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; valid: {', '.join(sorted(NEURONS))}")


def make_neuron(name: str, surrogate: nn.Module | None = None) -> nn.Module:
    """A multi-step ``name`` neuron ("if" or "lif") firing through ``surrogate``
    (default: :class:`StraightThroughATan`)."""
    check_neuron(name)
    return NEURONS[name](surrogate if surrogate is not None else StraightThroughATan())
