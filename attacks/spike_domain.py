"""The paper's spike-domain adaptation (Aksu et al. 2025, Sec. III): dummy inputs over time
and the two binarisation strategies.

- Images on a spiking victim: dummy [T,B,C,H,W], U(0.45, 0.55) replicated over T.
- Native events: dummy [T,B,2,H,W] ~ |N(0, sigma)| (Eq. 1), no clamping.
- Algorithm 1 ("post"): x~ = 1[x' > tau] once, after optimisation.
- Algorithm 2 ("in"): x' <- 1[x' > tau] after every optimiser step.
"""

from __future__ import annotations

import torch

from attacks.types import PublicInfo
from models import SPIKING

INITS = ("auto", "uniform-gray", "randn", "abs-normal")
THRESHOLDS = ("none", "post", "in")
INPUT_KINDS = ("image", "events")


def dummy_shape(public: PublicInfo) -> tuple[int, ...]:
    """[B,C,H,W] for ANN victims; [T,B,C,H,W] for spiking victims (images or events)."""
    shape = (public.samples, *public.input_shape)
    return (public.T, *shape) if time_major(public) else shape


def time_major(public: PublicInfo) -> bool:
    return public.arch in SPIKING or public.input_kind == "events"


def resolve_init(init: str, public: PublicInfo) -> str:
    """ "auto": the paper's choice, |N(0, sigma)| for events, U(0.45, 0.55) for images."""
    if init != "auto":
        return init
    return "abs-normal" if public.input_kind == "events" else "uniform-gray"


def init_dummy(
    public: PublicInfo, init: str, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """The initial dummy input of a gradient-matching attack (see module docstring)."""
    init = resolve_init(init, public)
    shape = dummy_shape(public)
    if init == "abs-normal":
        return (sigma * torch.randn(shape, generator=generator)).abs()
    # Image inits are drawn per image and replicated over T, as the paper describes.
    image_shape = shape[1:] if time_major(public) else shape
    if init == "uniform-gray":
        images = 0.45 + 0.1 * torch.rand(image_shape, generator=generator)
    elif init == "randn":
        images = torch.randn(image_shape, generator=generator)
    else:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    return (
        images.unsqueeze(0).repeat(public.T, *([1] * len(image_shape)))
        if time_major(public)
        else images
    )


def binarise(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Spikes: 1 where x > tau, else 0 (Algorithms 1 and 2)."""
    return (x > tau).to(x.dtype)
