"""How each judge architecture is trained: a ``JudgeSpec`` per architecture in ``JUDGE_SPECS``,
per-dataset changes to it, and the run config's overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from fl_sim.data.registry import judge_arch
from fl_sim.evaluation.judge_config import JudgeConfig

OPTIMIZERS = ("adam", "sgd")
EVENT_JUDGES = frozenset({"dvs-gesture-snn"})
"""Judges that take event frames (every other judge takes images)."""


@dataclass(frozen=True)
class JudgeSpec:
    """How one judge architecture is trained. arch, epochs, width and version name the cache
    file (with the weights' origin and event options): bump version when changing the rest.

    ``epochs`` 0 is not allowed here: 0 in ``RunConfig.judge_epochs`` means "this default".
    """

    arch: str
    epochs: int
    batch_size: int
    optimizer: str  # "adam" or "sgd"
    lr: float
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    cosine: bool = False  # cosine-annealed learning rate over the epochs
    width: int | None = None  # channel width of dvs-gesture-snn (Table I: 64)
    imagenet: bool = False  # resnet50-arcface: start from local IMAGENET1K_V1 weights
    version: int = 1

    def __post_init__(self) -> None:
        """Reject values that cannot train, naming them."""
        for name in ("epochs", "batch_size", "version"):
            if getattr(self, name) < 1:
                raise ValueError(f"judge spec {name} must be >= 1, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"judge spec optimizer {self.optimizer!r} unknown; valid: {', '.join(OPTIMIZERS)}"
            )
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"judge spec needs lr > 0, momentum >= 0, weight_decay >= 0; got lr={self.lr}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}"
            )
        if self.width is not None and self.width < 1:
            raise ValueError(f"judge spec width must be >= 1, got {self.width}")

    def model_options(self) -> dict[str, Any]:
        """Constructor arguments of the model beyond shape and classes."""
        options: dict[str, Any] = {}
        if self.width is not None:
            options["width"] = self.width
        if self.arch == "resnet50-arcface":
            options["imagenet"] = self.imagenet
        return options

    def optimizer_for(self, params: Any) -> torch.optim.Optimizer:
        """The configured optimiser over ``params``."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)


JUDGE_SPECS: dict[str, JudgeSpec] = {
    # The testbed's LeNet-5 judge as it always was: Adam 1e-3, batch 64, 15 epochs.
    "lenet5": JudgeSpec("lenet5", epochs=15, batch_size=64, optimizer="adam", lr=1e-3),
    # The paper fine-tunes from IMAGENET1K_V1. ArcFace (Deng et al. 2019) trains from scratch
    # with SGD, momentum 0.9, weight decay 5e-4, lr 0.1; fine-tuning takes a tenth of that lr.
    "resnet50-arcface": JudgeSpec(
        "resnet50-arcface",
        epochs=20,
        batch_size=64,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        cosine=True,
        imagenet=True,
    ),  # fmt: skip
    # Table I's width 64; SpikingJelly's DVS128 Gesture recipe (classify_dvsg, Fang et al.):
    # Adam 1e-3, batch 16, 64 epochs, cosine annealing.
    "dvs-gesture-snn": JudgeSpec(
        "dvs-gesture-snn",
        epochs=64,
        batch_size=16,
        optimizer="adam",
        lr=1e-3,
        cosine=True,
        width=64,
    ),  # fmt: skip
}
"""Default training recipe of each judge architecture."""


def judge_spec(arch: str, epochs: int = 0) -> JudgeSpec:
    """The spec of ``arch``, with ``epochs`` replacing its default unless 0."""
    if arch not in JUDGE_SPECS:
        raise ValueError(f"no judge spec for {arch!r}; valid: {', '.join(sorted(JUDGE_SPECS))}")
    if epochs < 0:
        raise ValueError(f"judge epochs must be >= 0 (0: the spec's default), got {epochs}")
    spec = JUDGE_SPECS[arch]
    return dataclasses.replace(spec, epochs=epochs) if epochs else spec


DATASET_SPECS: dict[str, dict[str, int]] = {
    # Not a paper dataset: 34x34 emulated digits on a 2-core CPU. Width 64 costs ~11 min per
    # epoch here; width 8 reached 94.5% test accuracy in 3 epochs (129 s).
    "nmnist-emulated": {"width": 8, "epochs": 10},
}
"""Per-dataset changes to the judge's default recipe (the architecture stays)."""


def config_spec(judge: JudgeConfig, dataset: str) -> JudgeSpec:
    """The spec of ``dataset``'s judge: the architecture's recipe, the dataset's changes to
    it, then ``judge_epochs`` / ``judge_width`` where not 0."""
    spec = judge_spec(judge_arch(dataset))
    spec = dataclasses.replace(spec, **DATASET_SPECS.get(dataset, {}))
    if judge.judge_epochs:
        spec = dataclasses.replace(spec, epochs=judge.judge_epochs)
    if judge.judge_width:
        if spec.width is None:
            raise ValueError(
                f"judge_width applies to the dvs-gesture-snn judge; {dataset}'s judge is "
                f"{spec.arch}: leave judge_width at 0"
            )
        spec = dataclasses.replace(spec, width=judge.judge_width)
    return spec
