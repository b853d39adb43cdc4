"""Public facts of a federation, shared by clients and the eavesdropper: the hyperparameters
every participant knows, and the victim model built from them alone."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from models.registry import build_model

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
    # Public client update transforms (published defences), in the order clients apply them,
    # as canonical ``TransformSpec`` strings; transforms that are not public never appear here.
    transforms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))  # lists from JSON
        for spec in self.transforms:
            TransformSpec.parse(spec)
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


_SPEC = re.compile(
    r"(?P<name>[a-z][a-z0-9_-]*)(?P<params>(?::[a-z_][a-z0-9_]*=[^:@,\s]+)*)(?:@(?P<part>\d+))?"
)


@dataclass(frozen=True)
class TransformSpec:
    """One client update transform as configured: ``NAME[:KEY=VALUE...][@PARTITION]``.

    The grammar is shared by the clients that apply transforms and by an attacker reading
    ``PublicInfo.transforms``; ``@PARTITION`` limits it to one client (default: every client).
    """

    name: str
    params: tuple[tuple[str, str], ...] = ()
    partition: int | None = None

    @classmethod
    def parse(cls, text: str) -> TransformSpec:
        """Read a spec string, e.g. ``nan@1`` or ``topk:fraction=0.1``."""
        match = _SPEC.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                f"transform spec {text!r} is not NAME[:KEY=VALUE...][@PARTITION] "
                "(e.g. nan@1, topk:fraction=0.1)"
            )
        items = [p.partition("=") for p in match["params"].split(":")[1:]]
        keys = [k for k, _, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError(f"transform spec {text!r} repeats a parameter")
        part = match["part"]
        return cls(match["name"], tuple((k, v) for k, _, v in items), int(part) if part else None)

    def __str__(self) -> str:
        params = "".join(f":{k}={v}" for k, v in self.params)
        return f"{self.name}{params}{'' if self.partition is None else f'@{self.partition}'}"


def model_for(public: PublicInfo) -> nn.Module:
    """A fresh model of the federation's public architecture (weights from the global RNG)."""
    return build_model(
        public.arch, public.input_shape, public.num_classes, T=public.T, neuron=public.neuron
    )


def sample_dim(inputs: torch.Tensor) -> int:
    """Batch dimension: 1 for time-major [T,B,C,H,W] inputs, else 0."""
    return 1 if inputs.dim() == 5 else 0
