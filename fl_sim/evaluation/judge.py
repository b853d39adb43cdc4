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

from fl_sim.data.config import DataConfig
from fl_sim.data.registry import load_dataset
from fl_sim.evaluation.judge_config import JudgeConfig
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
from models.device import resolve_device

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
    data: DataConfig,
    settings: JudgeConfig | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    spec: JudgeSpec | None = None,
) -> Judge:
    """Load the cached judge of ``data``'s dataset (recipe: ``spec``, else its default with
    ``settings``' overrides), training and caching it first if needed; it predicts on
    ``device`` (a device spec, e.g. the run's ``device``)."""
    spec = spec or config_spec(settings or JudgeConfig(), data.dataset)
    path = judge_path(data, spec)
    if path.exists():
        judge = load_judge(path)
        log(f"judge: {describe(judge)} ({path})")
    else:
        judge = train_judge(data, spec, device, log)
    judge.model.to(resolve_device(device))
    return judge


def train_judge(
    data: DataConfig, spec: JudgeSpec, device: str = "cpu", log: Callable[[str], None] = print
) -> Judge:
    """Train the judge of ``data``'s dataset on its train split (test accuracy per epoch)
    and cache it."""
    root = data.data_root or None
    train = load_dataset(data.dataset, "train", root, data.options)
    test = load_dataset(data.dataset, "test", root, data.options)
    return fit_judge(
        train, test, spec, judge_path(data, spec), data.options, log, data.dataset,
        device=resolve_device(device),
    )  # fmt: skip
