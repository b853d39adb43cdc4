"""Published client-side defences against gradient inversion, as update transforms: Gaussian
DP with clipping, top-k pruning and quantisation. All are public (an attacker knows the
defence and its parameters, never the noise drawn) and act on updates (FedSGD gradients or
FedAvg deltas), not on raw weights.

Why not Flower's ``LocalDpMod``: it clips ``reply - sent`` (weights replies only; our FedSGD
clients reply with gradients, where the update is the reply itself) and draws unseeded NumPy
noise, so runs could not be reproduced. The clipping is Flower's own
(``flwr.supercore.differential_privacy.clip_inputs_inplace``); the noise is drawn here from a
generator seeded per (run seed, round, partition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from flwr.supercore.differential_privacy import clip_inputs_inplace, get_norm

from fl_sim.federation.transforms.base import Transform, TransformContext, Update

NOISE_STREAM = 0x0D9  # keeps the DP noise stream apart from other seeded draws


def noise_seed(ctx: TransformContext) -> int:
    """The DP noise seed of one client's update in one round (reproducible per run)."""
    seed = NOISE_STREAM
    for part in (ctx.seed, ctx.server_round, ctx.partition_id):
        seed = (seed * 1_000_003 + part) % (2**61 - 1)
    return seed


def _check_finite(
    name: str, value: float, low: float, low_ok: bool, high: float | None = None
) -> None:
    bad = not math.isfinite(value) or value < low or (value == low and not low_ok)
    if high is not None:
        bad = bad or value > high
    if bad:
        rng = f"{'[' if low_ok else '('}{low}, {high if high is not None else 'inf'}"
        rng += "]" if high is not None else ")"
        raise ValueError(f"{name}={value} is out of range; allowed: {rng}")


@dataclass(frozen=True)
class UpdateDefence(Transform):
    """Base of the defences: they need an update (gradient or delta), not raw weights."""

    public = True
    update_kinds: ClassVar[tuple[str, ...]] = ("gradient", "delta")


@dataclass(frozen=True)
class GaussianDp(UpdateDefence):
    """Client-level Gaussian mechanism (DP-FedAvg, McMahan et al. 2018): clip the whole
    update to L2 norm ``clip``, then add N(0, (noise * clip)^2) to every coordinate.
    ``noise`` is the noise multiplier; the privacy it buys is accounted per run
    (``fl_sim.federation.privacy``)."""

    public = True
    clip: float = 1.0
    noise: float = 1.0
    delta: float = 1e-5  # the delta at which the run's epsilon is reported

    def __post_init__(self) -> None:
        _check_finite("clip", self.clip, 0.0, low_ok=False)
        _check_finite("noise", self.noise, 0.0, low_ok=True)
        _check_finite("delta", self.delta, 0.0, low_ok=False, high=1.0)

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        names = list(update)
        arrays = [update[k].detach().cpu().double().numpy().copy() for k in names]
        if get_norm(arrays) > 0:  # Flower's clipping divides by the norm
            clip_inputs_inplace(arrays, self.clip)
        gen = torch.Generator().manual_seed(noise_seed(ctx))
        std = self.noise * self.clip
        out = {}
        for name, array in zip(names, arrays, strict=True):
            clipped = torch.from_numpy(array)
            noise = torch.randn(clipped.shape, generator=gen, dtype=torch.float64) * std
            out[name] = (clipped + noise).to(update[name].dtype)
        return out

    @staticmethod
    def norm(update: Update) -> float:
        """L2 norm of a whole update (Flower's ``get_norm``), for checks and reports."""
        return get_norm([v.detach().cpu().double().numpy() for v in update.values()])


@dataclass(frozen=True)
class TopKPrune(UpdateDefence):
    """Gradient pruning (Zhu et al. 2019, DLG's defence): in every tensor, keep the
    ``ceil(keep * size)`` entries of largest magnitude and zero the rest (ties: lower index)."""

    public = True
    keep: float = 0.1

    def __post_init__(self) -> None:
        _check_finite("keep", self.keep, 0.0, low_ok=False, high=1.0)

    def kept(self, size: int) -> int:
        return max(1, math.ceil(self.keep * size))

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        out = {}
        for name, value in update.items():
            flat = value.detach().flatten()
            k = self.kept(flat.numel())
            order = torch.argsort(flat.abs(), descending=True, stable=True)[:k]
            pruned = torch.zeros_like(flat)
            pruned[order] = flat[order]
            out[name] = pruned.view_as(value)
        return out


@dataclass(frozen=True)
class Quantise(UpdateDefence):
    """Quantisation of every tensor: ``bits=1`` sends sign(g) * mean|g| (signSGD with its
    scale; zero counts as positive); ``bits>=2`` rounds to the nearest of 2^bits levels
    spaced evenly over [-max|g|, max|g|]."""

    public = True
    bits: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits={self.bits} is out of range; allowed: 1..16")

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        out = {}
        for name, value in update.items():
            g = value.detach()
            if self.bits == 1:
                scale = g.abs().mean()
                out[name] = torch.where(g >= 0, scale, -scale).to(g.dtype)
                continue
            top = g.abs().max()
            if top == 0:
                out[name] = g.clone()
                continue
            step = 2 * top / (2**self.bits - 1)
            out[name] = (torch.round((g + top) / step) * step - top).to(g.dtype)
        return out
