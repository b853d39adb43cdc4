"""The judge: a classifier trained on the dataset's train split, cached on disk.

Its accuracy on reconstructions is the attack success rate (ASR) of the paper.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fl_sim.config import RunConfig
from fl_sim.datasets import load_dataset
from models import build_model

JUDGE_ARCH = "lenet5"
JUDGE_VERSION = 1
JUDGE_SEED = 0  # the judge is independent of the run seed, so one cached judge serves all runs


@dataclass(frozen=True)
class Judge:
    model: nn.Module
    dataset: str
    accuracy: float  # on the dataset's test split
    path: Path

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images).argmax(dim=-1)


def judge_path(cfg: RunConfig) -> Path:
    name = f"{cfg.dataset}-{JUDGE_ARCH}-e{cfg.judge_epochs}-v{JUDGE_VERSION}.pt"
    return cfg.judge_cache / "judges" / name


def ensure_judge(cfg: RunConfig, log: Callable[[str], None] = print) -> Judge:
    """Load the cached judge of this dataset, training and caching it first if needed."""
    path = judge_path(cfg)
    if path.exists():
        judge = load_judge(path)
        log(f"judge: {JUDGE_ARCH} for {cfg.dataset}, test accuracy {judge.accuracy:.2%} ({path})")
        return judge
    return train_judge(cfg, log)


def load_judge(path: Path) -> Judge:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(JUDGE_ARCH, tuple(blob["input_shape"]), int(blob["num_classes"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return Judge(model, str(blob["dataset"]), float(blob["accuracy"]), path)


def train_judge(cfg: RunConfig, log: Callable[[str], None] = print) -> Judge:
    """Adam, batch 64, ``cfg.judge_epochs`` epochs on the train split; accuracy on test."""
    root = cfg.data_root or None
    train, test = load_dataset(cfg.dataset, "train", root), load_dataset(cfg.dataset, "test", root)
    gen = torch.Generator().manual_seed(JUDGE_SEED)
    torch.manual_seed(JUDGE_SEED)
    model = build_model(JUDGE_ARCH, train.input_shape, train.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    log(f"judge: training {JUDGE_ARCH} on {cfg.dataset} ({len(train)} images)")
    start = time.perf_counter()
    for epoch in range(1, cfg.judge_epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for batch in order.split(64):
            loss = F.cross_entropy(model(train.inputs[batch]), train.labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        acc = accuracy(model, test.inputs, test.labels)
        log(
            f"judge: epoch {epoch}/{cfg.judge_epochs} loss {total / len(train):.4f} "
            f"test accuracy {acc:.2%} ({time.perf_counter() - start:.0f}s)"
        )
    model.eval()
    path = judge_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(
        {
            "state_dict": model.state_dict(),
            "dataset": cfg.dataset,
            "accuracy": acc,
            "input_shape": list(train.input_shape),
            "num_classes": train.num_classes,
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    log(f"judge: cached at {path}")
    return Judge(model, cfg.dataset, acc, path)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    preds = torch.cat([model(chunk).argmax(-1) for chunk in images.split(512)])
    return float((preds == labels).float().mean())
