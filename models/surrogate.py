"""The spiking nonlinearity of the SNN victims: an ATan surrogate that supports double
backward and vmap, and the SpikingJelly neurons (IF or LIF) built with it.

SpikingJelly's built-in ``surrogate.ATan`` is an ``autograd.Function`` without
``setup_context``, so ``torch.func`` cannot trace it. Gradient-matching attacks need the
gradient of a gradient, so we write the same surrogate as a straight-through expression:
the forward value is the Heaviside step, the backward is d/dx [atan(pi/2*alpha*x)/pi + 1/2]
= alpha/2 / (1 + (pi/2*alpha*x)^2), exactly SpikingJelly's ATan.

An attacker may differentiate with a surrogate of its own (:data:`SURROGATE_SHAPES`, specs
like ``"sigmoid:alpha=4"``, :func:`parse_surrogate`, :func:`set_surrogate`): every shape is
the same straight-through expression around a different smooth step, so the forward (the
spikes) stays the client's bit for bit and only the backward changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from spikingjelly.activation_based import neuron
from spikingjelly.activation_based.neuron import BaseNode
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


# Smooth steps s(x) (0 -> 1 around x = 0) whose derivative is a surrogate gradient, with the
# default sharpness alpha of SpikingJelly's namesake (ATan 2, Sigmoid 4, SoftSign 2).
SURROGATE_SHAPES: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], float]] = {
    "atan": (lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5, 2.0),
    "sigmoid": (lambda x, a: torch.sigmoid(a * x), 4.0),
    "softsign": (lambda x, a: 0.5 * (a * x / (1 + torch.abs(a * x))) + 0.5, 2.0),
}


class StraightThroughSurrogate(nn.Module):
    """Heaviside(x) forward, d/dx of the smooth step ``shape`` (sharpness ``alpha``) in every
    backward pass; "atan" with alpha 2 computes exactly what :class:`StraightThroughATan` does.

    With ``alpha_end`` the sharpness is annealed: :meth:`anneal` moves it geometrically from
    ``alpha`` (start of an attack) to ``alpha_end`` (its last step)."""

    def __init__(
        self, shape: str = "atan", alpha: float | None = None, alpha_end: float | None = None
    ) -> None:
        super().__init__()
        if shape not in SURROGATE_SHAPES:
            raise ValueError(
                f"unknown surrogate shape {shape!r}; valid: {', '.join(sorted(SURROGATE_SHAPES))}"
            )
        alpha = SURROGATE_SHAPES[shape][1] if alpha is None else float(alpha)
        for value in (alpha, alpha if alpha_end is None else float(alpha_end)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"surrogate {shape!r} needs alpha > 0, got {value}")
        self.shape, self.alpha = shape, alpha
        self.alpha_start = alpha
        self.alpha_end = None if alpha_end is None else float(alpha_end)

    def anneal(self, step: int, steps: int) -> None:
        """Set alpha for ``step`` (1-based) of ``steps``: alpha_start * (alpha_end /
        alpha_start) ** ((step - 1) / (steps - 1)); nothing without ``alpha_end``."""
        if self.alpha_end is None:
            return
        fraction = (step - 1) / (steps - 1) if steps > 1 else 1.0
        self.alpha = self.alpha_start * (self.alpha_end / self.alpha_start) ** fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        soft = SURROGATE_SHAPES[self.shape][0](x, self.alpha)
        return (x >= 0).to(x.dtype) + (soft - soft.detach())

    def extra_repr(self) -> str:
        end = "" if self.alpha_end is None else f"..{self.alpha_end}"
        return f"shape={self.shape}, alpha={self.alpha_start}{end}"


_SURROGATE_SPEC = re.compile(
    r"(?P<shape>[a-z][a-z0-9_-]*)(?::alpha=(?P<alpha>[^:\s.][^:\s]*?)(?:\.\.(?P<end>[^:\s]+))?)?"
)


def _alpha(spec: str, text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError as err:
        raise ValueError(f"surrogate {spec!r}: alpha {text!r} is not a number") from err


def parse_surrogate(spec: str) -> StraightThroughSurrogate:
    """``SHAPE[:alpha=VALUE[..END]]``, e.g. ``"atan:alpha=2"`` (the client's), ``"sigmoid"``,
    or ``"atan:alpha=1..8"`` (sharpness annealed from 1 to 8 over the attack's steps)."""
    match = _SURROGATE_SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(
            f"surrogate {spec!r} is not SHAPE[:alpha=VALUE[..END]] (e.g. atan:alpha=2, "
            f"sigmoid:alpha=4, atan:alpha=1..8); shapes: {', '.join(sorted(SURROGATE_SHAPES))}"
        )
    return StraightThroughSurrogate(
        match["shape"], _alpha(spec, match["alpha"]), _alpha(spec, match["end"])
    )


def annealer(model: nn.Module) -> Callable[[int, int], None] | None:
    """``(step, steps) -> None`` that anneals every annealed surrogate in ``model`` (see
    :meth:`StraightThroughSurrogate.anneal`), or None when there is none."""
    annealed = [
        m for m in model.modules() if isinstance(m, StraightThroughSurrogate) and m.alpha_end
    ]
    if not annealed:
        return None

    def anneal(step: int, steps: int) -> None:
        for surrogate in annealed:
            surrogate.anneal(step, steps)

    return anneal


def set_surrogate(model: nn.Module, surrogate: nn.Module) -> int:
    """Make every SpikingJelly neuron of ``model`` fire through ``surrogate``; returns how many
    neurons it changed (0 for an ANN). The forward is unchanged for straight-through surrogates."""
    nodes = [m for m in model.modules() if isinstance(m, BaseNode)]
    for node in nodes:
        node.surrogate_function = surrogate
    return len(nodes)


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
