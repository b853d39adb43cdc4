"""What an eavesdropper sees, and what an attack gives back.

These types are the threat model's boundary: nothing in them carries the client's data.
The ground truth used to score reconstructions lives in ``fl_sim.audit`` and never
reaches an attack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

UPDATE_KINDS = ("gradient", "weights", "delta")


@dataclass(frozen=True)
class PublicInfo:
    """Public hyperparameters of the federation: known to every participant and the server."""

    arch: str  # registry name of the victim model
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    batch_size: int
    T: int = 1  # time steps (spiking victims only)
    loss: str = "cross_entropy"
    neuron: str = "if"  # spiking neuron model of SNN victims ("if" or "lif")
    input_kind: str = "image"  # "image" (replicated over T for SNNs) or "events" [T,B,C,H,W]
    # The client's training protocol, public like every hyperparameter of the federation.
    # "gradient" (FedSGD: the gradient of one batch), or FedAvg's "weights" / "delta" after
    # local_epochs passes over local_steps mini-batches of batch_size with SGD at local_lr.
    update: str = "gradient"
    local_steps: int = 1
    local_epochs: int = 1
    local_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.update not in UPDATE_KINDS:
            raise ValueError(f"unknown update {self.update!r}; valid: {', '.join(UPDATE_KINDS)}")
        if self.update != "gradient" and not (
            self.local_lr > 0 and self.local_steps >= 1 and self.local_epochs >= 1
        ):
            raise ValueError(
                "a FedAvg update needs local_lr > 0, local_steps >= 1, local_epochs >= 1; got "
                f"{self.local_lr}, {self.local_steps}, {self.local_epochs}"
            )

    @property
    def samples(self) -> int:
        """Private samples behind one update: what an attack reconstructs."""
        return self.batch_size * (1 if self.update == "gradient" else self.local_steps)


@dataclass(frozen=True)
class Capture:
    """One client update as intercepted on the server: the only input an attack gets."""

    round: int
    client: int  # the partition id the client reports in its reply
    # per parameter name: FedSGD's gradient, or FedAvg's new weights / delta (public.update)
    update: Mapping[str, torch.Tensor]
    global_state: Mapping[str, torch.Tensor]  # the global model the update was computed at
    public: PublicInfo


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


class Attack(Protocol):
    """Anything that reconstructs a client's data from a capture, and nothing more."""

    name: str

    def reconstruct(self, capture: Capture) -> Reconstruction: ...
