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


@dataclass(frozen=True)
class Capture:
    """One client update as intercepted on the server: the only input an attack gets."""

    round: int
    client: int  # the partition id the client reports in its reply
    update: Mapping[str, torch.Tensor]  # FedSGD: gradient of the loss per parameter name
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
