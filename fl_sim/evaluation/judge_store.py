"""A trained judge and its cache file: where it lives, how it is written and read back
(``weights_only``), and what a run records of it; prediction and accuracy on a split."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fl_sim.atomic_file import atomic_write
from fl_sim.data.config import DataConfig
from fl_sim.data.loaders.base import time_major
from fl_sim.data.registry import DataOptions, DataSplit, dataset_kind
from fl_sim.evaluation.judge_specs import JUDGE_SPECS, JudgeSpec
from models import build_model
from models.resnet_arcface import ResNetArcFace, imagenet_checkpoint
from models.safe_load import load_weights

JUDGE_ARCH = "lenet5"
"""Judge of the image datasets the testbed started with; a judge's own arch is ``Judge.arch``."""
JUDGE_VERSION = 1
"""Version of the LeNet-5 judge (kept: it names the caches that already exist)."""
BLOB_FORMAT = 2
"""Layout of the cached file; format 1 (no "format" key) is a LeNet-5 judge of images."""
PREDICT_CHUNK = 64
"""Samples per forward in predict/accuracy (bounds the memory of the spiking judge)."""


def event_options(options: DataOptions) -> dict[str, int]:
    """What the cache records of event-data options (frames, downsample)."""
    return {"frames": options.frames, "downsample": options.downsample}


@dataclass(frozen=True)
class Judge:
    """A trained judge and where it came from; ``accuracy`` is on the dataset's test split."""

    model: nn.Module
    dataset: str
    accuracy: float
    path: Path
    arch: str = JUDGE_ARCH
    kind: str = "image"  # what it takes: "image" [B,C,H,W] or "events" [B,T,C,H,W]
    pretrained: str = "none"  # resnet50-arcface: "IMAGENET1K_V1" if it started from it
    seconds: float = 0.0  # training time
    train_size: int = 0
    test_size: int = 0
    epochs: int = 0
    data_options: Mapping[str, int] = field(default_factory=dict)  # event data only

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Predicted labels [B] of inputs in the dataset's sample-major layout."""
        want = 5 if self.kind == "events" else 4
        if inputs.dim() != want:
            layout = "[B, T, C, H, W]" if self.kind == "events" else "[B, C, H, W]"
            raise ValueError(
                f"judge {self.arch} of {self.dataset} takes {self.kind} {layout}, "
                f"got {tuple(inputs.shape)}"
            )
        return predict_labels(self.model, inputs)


def judge_path(data: DataConfig, spec: JudgeSpec) -> Path:
    """Cache file of the judge of ``data``'s dataset trained with ``spec``."""
    name = f"{data.dataset}-{spec.arch}-e{spec.epochs}-v{spec.version}"
    if spec.width is not None:
        name += f"-w{spec.width}"
    if spec.arch == "resnet50-arcface":  # a later download of the weights means a new judge
        name += "-imagenet" if spec.imagenet and imagenet_checkpoint().is_file() else "-scratch"
    if dataset_kind(data.dataset) == "events":
        name += f"-f{data.frames}-d{data.downsample}"
    return data.cache_path / "judges" / f"{name}.pt"


def describe(judge: Judge) -> str:
    """One line: arch, dataset, test accuracy, weights' origin, training time."""
    return (
        f"{judge.arch} for {judge.dataset}, test accuracy {judge.accuracy:.2%}, "
        f"pretrained {judge.pretrained}, {judge.epochs} epochs in {judge.seconds:.1f}s"
    )


def judge_record(judge: Judge) -> dict[str, object]:
    """What a run records of its judge (run.json and the results store)."""
    return {
        "arch": judge.arch,
        "dataset": judge.dataset,
        "test_accuracy": judge.accuracy,
        "pretrained": judge.pretrained,
        "epochs": judge.epochs,
        "train_seconds": judge.seconds,
        "train_size": judge.train_size,
        "test_size": judge.test_size,
        "data_options": dict(judge.data_options),
        "path": str(judge.path),
    }


def load_judge(path: Path) -> Judge:
    """A cached judge (loaded with ``weights_only=True``), in eval mode."""
    blob = load_weights(path)
    arch = str(blob.get("arch", JUDGE_ARCH))
    known = {f.name for f in dataclasses.fields(JudgeSpec)}
    saved = {k: v for k, v in (blob.get("spec") or {}).items() if k in known}
    spec = JudgeSpec(**saved) if saved else JUDGE_SPECS[arch]
    options = spec.model_options()
    if "imagenet" in options:
        options["imagenet"] = False  # the state dict below replaces those weights anyway
    shape = tuple(int(s) for s in blob["input_shape"])
    model = build_model(arch, shape, int(blob["num_classes"]), **options)  # type: ignore[arg-type]
    model.load_state_dict(blob["state_dict"])
    model.eval()
    pretrained = str(blob.get("pretrained", "none"))
    if isinstance(model, ResNetArcFace):
        model.pretrained = pretrained
    return Judge(
        model=model,
        dataset=str(blob["dataset"]),
        accuracy=float(blob["accuracy"]),
        path=path,
        arch=arch,
        kind=str(blob.get("kind", "image")),
        pretrained=pretrained,
        seconds=float(blob.get("seconds", 0.0)),
        train_size=int(blob.get("train_size", 0)),
        test_size=int(blob.get("test_size", 0)),
        epochs=int(blob.get("epochs", 0)),
        data_options=dict(blob.get("data_options") or {}),
    )


def save_judge(judge: Judge, spec: JudgeSpec, train: DataSplit) -> None:
    """Cache ``judge`` (trained with ``spec`` on ``train``) at ``judge.path``."""
    blob = {
        "format": BLOB_FORMAT,
        "state_dict": judge.model.state_dict(),
        "arch": spec.arch,
        "spec": dataclasses.asdict(spec),
        "dataset": judge.dataset,
        "kind": judge.kind,
        "data_options": dict(judge.data_options),
        "accuracy": judge.accuracy,
        "pretrained": judge.pretrained,
        "seconds": judge.seconds,
        "train_size": judge.train_size,
        "test_size": judge.test_size,
        "epochs": spec.epochs,
        "input_shape": list(train.input_shape),
        "time_steps": train.time_steps,
        "num_classes": train.num_classes,
    }
    _save_atomic(blob, judge.path)


@torch.no_grad()
def predict_labels(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """argmax of ``model`` on sample-major images [B,C,H,W] or event frames [B,T,C,H,W]."""
    model.eval()
    if len(inputs) == 0:
        return torch.empty(0, dtype=torch.long)
    device = next(model.parameters()).device  # chunks go there, labels come back to the CPU
    chunks = inputs.split(PREDICT_CHUNK)
    return torch.cat([model(time_major(c).to(device)).argmax(-1).cpu() for c in chunks])


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``labels`` predicted (sample-major images or event frames, as in a DataSplit)."""
    if len(labels) == 0:
        return math.nan
    return float((predict_labels(model, images) == labels).float().mean())


@torch.no_grad()
def split_accuracy(model: nn.Module, data: DataSplit) -> float:
    """:func:`accuracy` on a whole split, read chunk by chunk (:meth:`DataSplit.take`): packed
    event frames are never unpacked as a whole."""
    if len(data) == 0:
        return math.nan
    hits = 0
    for start in range(0, len(data), PREDICT_CHUNK):
        rows = slice(start, start + PREDICT_CHUNK)
        hits += int((predict_labels(model, data.take(rows)) == data.labels[rows]).sum())
    return hits / len(data)


def _save_atomic(blob: dict[str, Any], path: Path) -> None:
    """Write through a temporary file: a concurrent reader never sees half a file."""
    with atomic_write(path, durable=False) as fh:
        torch.save(blob, fh)
