"""The judge: a classifier trained on the dataset's train split, cached on disk.

Its accuracy on reconstructions is the attack success rate (ASR) of the paper. Each dataset
names its judge architecture (:func:`fl_sim.data.registry.judge_arch`): LeNet-5 for MNIST and
CIFAR-100, ResNet-50 + ArcFace for LFW, the residual spiking DVSGestureSNN for DVS128 Gesture.
How each is trained is a :class:`JudgeSpec` in :data:`JUDGE_SPECS` (``judge_specs``); one loop
trains them all (``judge_training``); ``judge_store`` holds the :class:`Judge` and its cache file.
This module loads or trains the judge of a run; the public names of all three import from here.
"""

from __future__ import annotations

from collections.abc import Callable

from fl_sim.config import RunConfig
from fl_sim.data.registry import load_dataset
from fl_sim.evaluation.judge_specs import (
    DATASET_SPECS,
    EVENT_JUDGES,
    JUDGE_SPECS,
    OPTIMIZERS,
    JudgeSpec,
    config_spec,
    judge_spec,
)
from fl_sim.evaluation.judge_store import (
    BLOB_FORMAT,
    JUDGE_ARCH,
    JUDGE_VERSION,
    PREDICT_CHUNK,
    Judge,
    accuracy,
    describe,
    event_options,
    judge_path,
    judge_record,
    load_judge,
    predict_labels,
    save_judge,
    split_accuracy,
)
from fl_sim.evaluation.judge_training import JUDGE_SEED, fit_judge

__all__ = [
    "BLOB_FORMAT",
    "DATASET_SPECS",
    "EVENT_JUDGES",
    "JUDGE_ARCH",
    "JUDGE_SEED",
    "JUDGE_SPECS",
    "JUDGE_VERSION",
    "OPTIMIZERS",
    "PREDICT_CHUNK",
    "Judge",
    "JudgeSpec",
    "accuracy",
    "config_spec",
    "describe",
    "ensure_judge",
    "event_options",
    "fit_judge",
    "judge_path",
    "judge_record",
    "judge_spec",
    "load_judge",
    "predict_labels",
    "save_judge",
    "split_accuracy",
    "train_judge",
]


def ensure_judge(
    cfg: RunConfig, log: Callable[[str], None] = print, spec: JudgeSpec | None = None
) -> Judge:
    """Load the cached judge of this dataset, training and caching it first if needed; it
    predicts on the run's device."""
    path = judge_path(cfg, spec)
    if path.exists():
        judge = load_judge(path)
        log(f"judge: {describe(judge)} ({path})")
    else:
        judge = train_judge(cfg, log, spec)
    judge.model.to(cfg.torch_device)
    return judge


def train_judge(
    cfg: RunConfig, log: Callable[[str], None] = print, spec: JudgeSpec | None = None
) -> Judge:
    """Train ``cfg.dataset``'s judge on its train split (test accuracy per epoch) and cache it."""
    spec = spec or config_spec(cfg)
    root = cfg.data_root or None
    options = cfg.data_options
    train = load_dataset(cfg.dataset, "train", root, options)
    test = load_dataset(cfg.dataset, "test", root, options)
    return fit_judge(
        train, test, spec, judge_path(cfg, spec), options, log, cfg.dataset,
        device=cfg.torch_device,
    )  # fmt: skip
