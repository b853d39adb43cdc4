"""What an eavesdropper sees, and what an attack gives back.

These types are the threat model's boundary: nothing in them carries the client's data.
The ground truth used to score reconstructions lives in ``fl_sim.evaluation.audit`` and never
reaches an attack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from models.public import UPDATE_KINDS, PublicInfo

__all__ = ["UPDATE_KINDS", "Attack", "Capture", "PublicInfo", "Reconstruction"]


@dataclass(frozen=True)
class Capture:
    """One client update as intercepted on the server: the only input an attack gets."""

    round: int
    client: int  # the partition id the client reports in its reply
    # per parameter name: FedSGD's gradient, or FedAvg's new weights / delta (public.update)
    update: Mapping[str, torch.Tensor]
    global_state: Mapping[str, torch.Tensor]  # the global model the update was computed at
    public: PublicInfo

    @property
    def device(self) -> torch.device:
        """Where the captured arrays are; an attack builds its victim and dummies there."""
        return next(iter(self.update.values())).device

    def to(self, device: torch.device | str) -> Capture:
        """This capture with its arrays on ``device`` (itself if they are there already)."""
        device = torch.device(device)
        arrays = [*self.update.values(), *self.global_state.values()]
        if all(a.device == device for a in arrays):
            return self
        return dataclasses.replace(
            self,
            update={k: v.to(device) for k, v in self.update.items()},
            global_state={k: v.to(device) for k, v in self.global_state.items()},
        )


@dataclass(frozen=True)
class Reconstruction:
    """An attack's output for one capture.

    ``images`` is what gets scored: [B,C,H,W] in [0,1] for image data (for spiking victims
    the mean over T of the [T,B,C,H,W] dummy, kept whole in ``dummy``); for event data the
    reconstructed frames [T,B,C,H,W] themselves.
    """

    images: torch.Tensor
    labels: torch.Tensor  # [B] labels the attack recovered
    grad_loss: float  # final gradient-matching loss
    # "ok"; "converged" (loss reached the tolerance early); "nonfinite" (NaN/Inf: last finite
    # iterate kept); "diverged" (loss blew up: iterate before the jump kept)
    status: str
    iterations: int
    seconds: float
    dummy: torch.Tensor | None = None

    def cpu(self) -> Reconstruction:
        """This reconstruction with its tensors on the CPU, where scoring happens."""
        dummy = None if self.dummy is None else self.dummy.cpu()
        return dataclasses.replace(
            self, images=self.images.cpu(), labels=self.labels.cpu(), dummy=dummy
        )


class Attack(Protocol):
    """Anything that reconstructs a client's data from a capture, and nothing more."""

    name: str

    def reconstruct(self, capture: Capture) -> Reconstruction: ...
