"""The one loop that trains every judge (images or event frames), seeded, with the test
accuracy per epoch and BatchNorm statistics recomputed at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fl_sim.data.loaders.base import time_major
from fl_sim.data.registry import DataOptions, DataSplit
from fl_sim.evaluation.judge_specs import EVENT_JUDGES, JudgeSpec
from fl_sim.evaluation.judge_store import Judge, event_options, save_judge, split_accuracy
from fl_sim.ops.progress import Eta, steps
from models import build_model
from models.resnet_arcface import ResNetArcFace

JUDGE_SEED = 0  # the judge is independent of the run seed, so one cached judge serves all runs
_NOUNS = {"image": "images", "events": "event recordings"}


def fit_judge(
    train: DataSplit,
    test: DataSplit,
    spec: JudgeSpec,
    path: Path,
    options: DataOptions | None = None,
    log: Callable[[str], None] = print,
    dataset: str | None = None,
    progress: bool | None = None,
    device: torch.device | None = None,
) -> Judge:
    """Train ``spec`` on ``train``, report test accuracy per epoch, cache it at ``path``.

    ``options`` are the data options the splits were loaded with (recorded for event data);
    ``progress``: tqdm bar per epoch (None: only on a terminal; else plain progress lines).
    ``device``: where it trains (None: the CPU); initialised on the CPU, batches drawn there.
    """
    dataset = dataset or train.name
    _check_splits(train, test, spec.arch)
    kind = train.kind
    gen = torch.Generator().manual_seed(JUDGE_SEED)
    torch.manual_seed(JUDGE_SEED)
    model = build_model(spec.arch, train.input_shape, train.num_classes, **spec.model_options())
    device = device or torch.device("cpu")
    model.to(device)
    pretrained = str(getattr(model, "pretrained", "none"))
    opt = spec.optimizer_for(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs) if spec.cosine else None
    log(
        f"judge: training {spec.arch} on {dataset} ({len(train)} {_NOUNS[kind]}, "
        f"{spec.epochs} epochs, batch {spec.batch_size}, {spec.optimizer} lr {spec.lr}, "
        f"pretrained {pretrained})"
    )
    start = time.perf_counter()
    epochs = Eta(spec.epochs)
    acc = 0.0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        total = 0.0
        batches = _batches(len(train), spec.batch_size, gen)
        for batch in steps(
            batches,
            f"judge {spec.arch} epoch {epoch}/{spec.epochs}",
            len(batches),
            unit="batches",
            log=log,
            terminal=progress,
        ):
            loss = _loss(model, train.take(batch).to(device), train.labels[batch].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        if sched is not None:
            sched.step()
        acc = split_accuracy(model, test)
        log(
            f"judge: epoch {epoch}/{spec.epochs} loss {total / len(train):.4f} "
            f"test accuracy {acc:.2%} (epochs {epochs.advance()})"
        )
    if _recalibrate_batchnorm(model, train, _batches(len(train), spec.batch_size, gen)):
        acc = split_accuracy(model, test)
        log(f"judge: BatchNorm statistics recomputed on the train split: test accuracy {acc:.2%}")
    seconds = time.perf_counter() - start
    model.eval()
    recorded = event_options(options or DataOptions()) if kind == "events" else {}
    judge = Judge(
        model, dataset, acc, path, spec.arch, kind, pretrained, seconds, len(train), len(test),
        spec.epochs, recorded,
    )  # fmt: skip
    save_judge(judge, spec, train)
    log(f"judge: cached at {path}")
    return judge


def _check_splits(train: DataSplit, test: DataSplit, arch: str) -> None:
    """Train and test must agree with each other and with what ``arch`` takes."""
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"judge needs samples in both splits, got {len(train)} and {len(test)}")
    if train.kind != test.kind or train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test samples differ: {train.shape[1:]} vs {test.shape[1:]}")
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
def _recalibrate_batchnorm(model: nn.Module, data: DataSplit, batches: list[torch.Tensor]) -> bool:
    """Replace BatchNorm running statistics by their average over one pass of the final
    weights on ``data`` ("precise BN"): the running averages trail the weights, which
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
        model(time_major(data.take(batch)).to(next(model.parameters()).device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return True


def _loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; on ArcFace's margin logits for the ResNet, time-major for event data."""
    if isinstance(model, ResNetArcFace):
        return F.cross_entropy(model.margin_logits(inputs, labels), labels)
    return F.cross_entropy(model(time_major(inputs)), labels)
