"""The judge: a classifier trained on the dataset's train split, cached on disk.

Its accuracy on reconstructions is the attack success rate (ASR) of the paper. Each dataset
names its judge architecture (:func:`fl_sim.data.registry.judge_arch`): LeNet-5 for MNIST and
CIFAR-100, ResNet-50 + ArcFace for LFW, the residual spiking DVSGestureSNN for DVS128 Gesture.
How each is trained is a :class:`JudgeSpec` in :data:`JUDGE_SPECS`; one loop trains them all.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fl_sim.config import RunConfig
from fl_sim.data.loaders.base import time_major
from fl_sim.data.registry import DataOptions, DataSplit, dataset_kind, judge_arch, load_dataset
from models import build_model
from models.resnet_arcface import ResNetArcFace, imagenet_checkpoint

JUDGE_ARCH = "lenet5"
"""Judge of the image datasets the testbed started with; a judge's own arch is ``Judge.arch``."""
JUDGE_VERSION = 1
"""Version of the LeNet-5 judge (kept: it names the caches that already exist)."""
JUDGE_SEED = 0  # the judge is independent of the run seed, so one cached judge serves all runs
BLOB_FORMAT = 2
"""Layout of the cached file; format 1 (no "format" key) is a LeNet-5 judge of images."""
OPTIMIZERS = ("adam", "sgd")
EVENT_JUDGES = frozenset({"dvs-gesture-snn"})
"""Judges that take event frames (every other judge takes images)."""
_NOUNS = {"image": "images", "events": "event recordings"}
PREDICT_CHUNK = 64
"""Samples per forward in predict/accuracy (bounds the memory of the spiking judge)."""


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


def config_spec(cfg: RunConfig) -> JudgeSpec:
    """The spec of ``cfg.dataset``'s judge: the architecture's recipe, the dataset's changes
    to it, then ``cfg.judge_epochs`` / ``cfg.judge_width`` where not 0."""
    spec = judge_spec(judge_arch(cfg.dataset))
    spec = dataclasses.replace(spec, **DATASET_SPECS.get(cfg.dataset, {}))
    if cfg.judge_epochs:
        spec = dataclasses.replace(spec, epochs=cfg.judge_epochs)
    if cfg.judge_width:
        if spec.width is None:
            raise ValueError(
                f"judge_width applies to the dvs-gesture-snn judge; {cfg.dataset}'s judge is "
                f"{spec.arch}: leave judge_width at 0"
            )
        spec = dataclasses.replace(spec, width=cfg.judge_width)
    return spec


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


def judge_path(cfg: RunConfig, spec: JudgeSpec | None = None) -> Path:
    """Cache file of ``cfg.dataset``'s judge trained with ``spec`` (default: config_spec)."""
    spec = spec or config_spec(cfg)
    name = f"{cfg.dataset}-{spec.arch}-e{spec.epochs}-v{spec.version}"
    if spec.width is not None:
        name += f"-w{spec.width}"
    if spec.arch == "resnet50-arcface":  # a later download of the weights means a new judge
        name += "-imagenet" if spec.imagenet and imagenet_checkpoint().is_file() else "-scratch"
    if dataset_kind(cfg.dataset) == "events":
        name += f"-f{cfg.frames}-d{cfg.downsample}"
    return cfg.judge_cache / "judges" / f"{name}.pt"


def ensure_judge(
    cfg: RunConfig, log: Callable[[str], None] = print, spec: JudgeSpec | None = None
) -> Judge:
    """Load the cached judge of this dataset, training and caching it first if needed."""
    path = judge_path(cfg, spec)
    if path.exists():
        judge = load_judge(path)
        log(f"judge: {describe(judge)} ({path})")
        return judge
    return train_judge(cfg, log, spec)


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
    blob = torch.load(path, map_location="cpu", weights_only=True)
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


def train_judge(
    cfg: RunConfig, log: Callable[[str], None] = print, spec: JudgeSpec | None = None
) -> Judge:
    """Train ``cfg.dataset``'s judge on its train split (test accuracy per epoch) and cache it."""
    spec = spec or config_spec(cfg)
    root = cfg.data_root or None
    options = cfg.data_options
    train = load_dataset(cfg.dataset, "train", root, options)
    test = load_dataset(cfg.dataset, "test", root, options)
    return fit_judge(train, test, spec, judge_path(cfg, spec), options, log, dataset=cfg.dataset)


def fit_judge(
    train: DataSplit,
    test: DataSplit,
    spec: JudgeSpec,
    path: Path,
    options: DataOptions | None = None,
    log: Callable[[str], None] = print,
    dataset: str | None = None,
    progress: bool | None = None,
) -> Judge:
    """Train ``spec`` on ``train``, report test accuracy per epoch, cache it at ``path``.

    ``options`` are the data options the splits were loaded with (recorded for event data);
    ``progress``: tqdm bar per epoch (None: only on a terminal).
    """
    dataset = dataset or train.name
    _check_splits(train, test, spec.arch)
    kind = train.kind
    gen = torch.Generator().manual_seed(JUDGE_SEED)
    torch.manual_seed(JUDGE_SEED)
    model = build_model(spec.arch, train.input_shape, train.num_classes, **spec.model_options())
    pretrained = str(getattr(model, "pretrained", "none"))
    opt = spec.optimizer_for(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs) if spec.cosine else None
    log(
        f"judge: training {spec.arch} on {dataset} ({len(train)} {_NOUNS[kind]}, "
        f"{spec.epochs} epochs, batch {spec.batch_size}, {spec.optimizer} lr {spec.lr}, "
        f"pretrained {pretrained})"
    )
    start = time.perf_counter()
    acc = 0.0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        total = 0.0
        bar = tqdm(
            _batches(len(train), spec.batch_size, gen),
            desc=f"judge {spec.arch} epoch {epoch}/{spec.epochs}",
            unit="batch",
            leave=False,
            disable=None if progress is None else not progress,
        )
        for batch in bar:
            loss = _loss(model, train.inputs[batch], train.labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        bar.close()
        if sched is not None:
            sched.step()
        acc = accuracy(model, test.inputs, test.labels)
        log(
            f"judge: epoch {epoch}/{spec.epochs} loss {total / len(train):.4f} "
            f"test accuracy {acc:.2%} ({time.perf_counter() - start:.0f}s)"
        )
    if _recalibrate_batchnorm(model, train.inputs, _batches(len(train), spec.batch_size, gen)):
        acc = accuracy(model, test.inputs, test.labels)
        log(f"judge: BatchNorm statistics recomputed on the train split: test accuracy {acc:.2%}")
    seconds = time.perf_counter() - start
    model.eval()
    recorded = event_options(options or DataOptions()) if kind == "events" else {}
    blob = {
        "format": BLOB_FORMAT,
        "state_dict": model.state_dict(),
        "arch": spec.arch,
        "spec": dataclasses.asdict(spec),
        "dataset": dataset,
        "kind": kind,
        "data_options": recorded,
        "accuracy": acc,
        "pretrained": pretrained,
        "seconds": seconds,
        "train_size": len(train),
        "test_size": len(test),
        "epochs": spec.epochs,
        "input_shape": list(train.input_shape),
        "time_steps": train.time_steps,
        "num_classes": train.num_classes,
    }
    _save_atomic(blob, path)
    log(f"judge: cached at {path}")
    return Judge(
        model, dataset, acc, path, spec.arch, kind, pretrained, seconds, len(train), len(test),
        spec.epochs, recorded,
    )  # fmt: skip


def _check_splits(train: DataSplit, test: DataSplit, arch: str) -> None:
    """Train and test must agree with each other and with what ``arch`` takes."""
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"judge needs samples in both splits, got {len(train)} and {len(test)}")
    if train.kind != test.kind or train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise ValueError(
            f"train and test samples differ: {tuple(train.inputs.shape[1:])} vs "
            f"{tuple(test.inputs.shape[1:])}"
        )
    if train.num_classes != test.num_classes:
        raise ValueError(
            f"train and test differ in num_classes: {train.num_classes} vs {test.num_classes}"
        )
    want = "events" if arch in EVENT_JUDGES else "image"
    if train.kind != want:
        raise ValueError(f"judge {arch} takes {want} data, got {train.kind} data")


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch; a last batch of one sample joins the one before (BatchNorm needs 2)."""
    batches = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


@torch.no_grad()
def _recalibrate_batchnorm(
    model: nn.Module, inputs: torch.Tensor, batches: list[torch.Tensor]
) -> bool:
    """Replace BatchNorm running statistics by their average over one pass of the final
    weights on ``inputs`` ("precise BN"): the running averages trail the weights, which
    silences spiking layers in eval mode after short trainings. False if there is no BN."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    for batch in batches:
        model(time_major(inputs[batch]))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return True


def _loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; on ArcFace's margin logits for the ResNet, time-major for event data."""
    if isinstance(model, ResNetArcFace):
        return F.cross_entropy(model.margin_logits(inputs, labels), labels)
    return F.cross_entropy(model(time_major(inputs)), labels)


@torch.no_grad()
def predict_labels(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """argmax of ``model`` on sample-major images [B,C,H,W] or event frames [B,T,C,H,W]."""
    model.eval()
    if len(inputs) == 0:
        return torch.empty(0, dtype=torch.long)
    chunks = inputs.split(PREDICT_CHUNK)
    return torch.cat([model(time_major(chunk)).argmax(-1) for chunk in chunks])


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``labels`` predicted (sample-major images or event frames, as in a DataSplit)."""
    if len(labels) == 0:
        return math.nan
    return float((predict_labels(model, images) == labels).float().mean())


def _save_atomic(blob: dict[str, Any], path: Path) -> None:
    """Write through a temporary file: a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
