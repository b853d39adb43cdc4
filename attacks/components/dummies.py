"""How the unknown input is parametrised: name -> :class:`Dummy`.

- ``free``: the victim's input itself is optimised: [B,C,H,W] for ANN victims, [T,B,C,H,W]
  frames for spiking victims (the paper's adaptation, every frame free).
- ``tied``: for spiking victims on image data, one image [B,C,H,W] is optimised and
  replicated over T when it is fed to the victim, as the client's direct encoding does (the
  encoding is public). On an ANN victim it is ``free``; event data has no static image to
  tie, so it is refused.
"""

from __future__ import annotations

from typing import Protocol

import torch

from attacks.spike_domain import init_dummy, time_major
from attacks.types import PublicInfo
from models import SPIKING


class Dummy(Protocol):
    """A parametrisation of the unknown input. ``lead`` leading dimensions of ``variable``
    index independent problems (the batched engine stacks them)."""

    name: str

    def check(self, public: PublicInfo) -> None:
        """Raise ValueError if this parametrisation does not apply to ``public``."""

    def init(
        self, public: PublicInfo, init: str, sigma: float, generator: torch.Generator
    ) -> torch.Tensor:
        """The initial variable, drawn from ``generator``."""

    def inputs(self, variable: torch.Tensor, public: PublicInfo, lead: int = 0) -> torch.Tensor:
        """What the victim is fed (differentiable in ``variable``)."""

    def output(
        self, variable: torch.Tensor, public: PublicInfo, clamp: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what is scored, the time-major dummy kept in ``Reconstruction.dummy`` or None)."""

    def start(
        self, images: torch.Tensor, frames: torch.Tensor | None, public: PublicInfo
    ) -> torch.Tensor:
        """The variable holding a reconstruction (``output``'s pair), to start from it."""


def scored_output(dummy: torch.Tensor, public: PublicInfo, clamp: str) -> torch.Tensor:
    """What is scored: event frames as they are; images (mean over T for spiking victims)
    clamped to [0, 1] unless clamping is off."""
    if public.input_kind == "events":
        return dummy
    images = dummy.mean(0) if time_major(public) else dummy
    return images if clamp == "none" else images.clamp(0, 1)


class FreeDummy:
    """The victim's input itself (the paper's dummy, :func:`attacks.spike_domain.init_dummy`)."""

    name = "free"

    def check(self, public: PublicInfo) -> None:
        pass

    def init(
        self, public: PublicInfo, init: str, sigma: float, generator: torch.Generator
    ) -> torch.Tensor:
        return init_dummy(public, init, sigma, generator)

    def inputs(self, variable: torch.Tensor, public: PublicInfo, lead: int = 0) -> torch.Tensor:
        return variable

    def output(
        self, variable: torch.Tensor, public: PublicInfo, clamp: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return scored_output(variable, public, clamp), variable if time_major(public) else None

    def start(
        self, images: torch.Tensor, frames: torch.Tensor | None, public: PublicInfo
    ) -> torch.Tensor:
        if frames is not None or not time_major(public) or public.input_kind == "events":
            return (images if frames is None else frames).clone()
        return images.unsqueeze(0).expand(public.T, *images.shape).clone()


class TiedDummy:
    """One image per sample, replicated over the spiking victim's T steps."""

    name = "tied"

    def check(self, public: PublicInfo) -> None:
        if public.input_kind == "events":
            raise ValueError(
                "dummy 'tied' needs image data (one image replicated over T); event data "
                "has no static image: use dummy 'free'"
            )

    def _tied(self, public: PublicInfo) -> bool:
        return public.arch in SPIKING

    def init(
        self, public: PublicInfo, init: str, sigma: float, generator: torch.Generator
    ) -> torch.Tensor:
        self.check(public)
        frames = init_dummy(public, init, sigma, generator)  # the same draws as "free"
        return frames[0].clone() if self._tied(public) else frames

    def inputs(self, variable: torch.Tensor, public: PublicInfo, lead: int = 0) -> torch.Tensor:
        if not self._tied(public):
            return variable
        shape = variable.shape
        return variable.unsqueeze(lead).expand(*shape[:lead], public.T, *shape[lead:])

    def output(
        self, variable: torch.Tensor, public: PublicInfo, clamp: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = variable if clamp == "none" else variable.clamp(0, 1)
        if not self._tied(public):
            return images, None
        return images, self.inputs(variable, public).clone()

    def start(
        self, images: torch.Tensor, frames: torch.Tensor | None, public: PublicInfo
    ) -> torch.Tensor:
        self.check(public)
        return images.clone()  # a spiking victim's scored image is the mean over T


DUMMIES: dict[str, Dummy] = {"free": FreeDummy(), "tied": TiedDummy()}
