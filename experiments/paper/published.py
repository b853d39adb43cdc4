"""The paper's published values (Aksu et al. 2025, Tables IV-VI), read from ``published.csv``:
one value per line with where it stands in the paper (table, row, column)."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

PUBLISHED_CSV = Path(__file__).with_name("published.csv")

# our dataset -> (the paper's dataset it is compared with, what to say about the pairing);
# a dataset missing here has no published counterpart (e.g. lfw-subset: scikit-image's
# face / non-face crops, not the paper's LFW identity task)
PAPER_DATASETS: dict[str, tuple[str, str]] = {
    "mnist": ("MNIST", ""),
    "mnist5k": ("MNIST", "mnist5k: a 5,000-digit subset of MNIST"),
    "cifar100": ("CIFAR-100", ""),
    "lfw": ("LFW", ""),
    "dvsgesture": ("DVS128 Gesture", ""),
    "nmnist-emulated": (
        "DVS128 Gesture",
        "nmnist-emulated stands in for DVS128 Gesture: emulated N-MNIST saccades of real "
        "MNIST digits (10 classes, 2x34x34), not gestures (11 classes, 2x128x128)",
    ),
}

# datasets shown beside another dataset's published values: only rates are comparable
STAND_INS = frozenset({"nmnist-emulated"})


@dataclass(frozen=True)
class Published:
    """One published number and its place in the paper."""

    table: str  # IV, V or VI
    dataset: str  # the paper's name
    model: str  # ann, snn, or "" (Table VI)
    attack: str  # registry name, or "" (Table VI)
    setting: str  # e.g. "post tau=0.5" (Table V), "intra" (Table VI), "" (Table IV)
    metric: str  # asr (percent), mse, ssim, psnr, l2, mean, std, min, max
    value: float
    source: str  # "Table IV, row DLG / MNIST / LeNet, column ASR (%)"


@functools.cache
def published_values() -> tuple[Published, ...]:
    """Every value of ``published.csv``."""
    with PUBLISHED_CSV.open(newline="") as fh:
        return tuple(
            Published(
                rec["table"],
                rec["dataset"],
                rec["model"],
                rec["attack"],
                rec["setting"],
                rec["metric"],
                float(rec["value"]),
                rec["source"],
            )  # fmt: skip
            for rec in csv.DictReader(fh)
        )


def published(
    table: str, dataset: str, metric: str, model: str = "", attack: str = "", setting: str = ""
) -> Published | None:
    """The published value of a cell of ``table`` for our ``dataset`` (None when the paper
    has no counterpart)."""
    paper = PAPER_DATASETS.get(dataset)
    if paper is None:
        return None
    for value in published_values():
        key = (value.table, value.dataset, value.metric, value.model, value.attack, value.setting)
        if key == (table, paper[0], metric, model, attack, setting):
            return value
    return None


def pairing_note(dataset: str) -> str:
    """What a row of ``dataset`` is compared with in the paper, in one line."""
    if dataset not in PAPER_DATASETS:
        return f"{dataset}: no published counterpart (compared with nothing)"
    paper, note = PAPER_DATASETS[dataset]
    return note or f"{dataset}: compared with the paper's {paper}"
