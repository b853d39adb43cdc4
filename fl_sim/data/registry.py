"""Datasets behind a registry (name -> loader class), loaded fully into memory.

Every loader returns a :class:`DataSplit`: float32 images [N,C,H,W] in [0, 1] or binary
event frames [N,T,2,H,W] (stored as bits, memory-mapped from a cache, read per batch with
``DataSplit.take``), with int64 labels. Nothing is ever downloaded: real datasets are
read from files the user puts under ``data_root``; the embedded ones ship inside packages.
"""

from __future__ import annotations

import functools
import os

from fl_sim.data.loaders.base import (
    KINDS,
    SPLITS,
    DataOptions,
    DatasetLoader,
    DataSplit,
    check_split,
)
from fl_sim.data.loaders.cifar import Cifar100Loader
from fl_sim.data.loaders.dvsgesture import DvsGestureLoader
from fl_sim.data.loaders.lfw import LfwLoader, decode_lfw_folder
from fl_sim.data.loaders.lfw_subset import LfwSubsetLoader, _lfw_subset_splits
from fl_sim.data.loaders.mnist import (
    MNIST5K_SEED,
    MNIST5K_TRAIN_PER_CLASS,
    MNIST_RAW_FILES,
    Mnist5kLoader,
    TorchvisionMnistLoader,
    _mnist5k_splits,
)
from fl_sim.data.loaders.nmnist_emulated import NmnistEmulatedLoader

__all__ = [
    "DATASETS",
    "KINDS",
    "MNIST5K_SEED",
    "MNIST5K_TRAIN_PER_CLASS",
    "MNIST_RAW_FILES",
    "SPLITS",
    "DataOptions",
    "DataSplit",
    "clear_dataset_cache",
    "dataset_kind",
    "judge_arch",
    "load_dataset",
]

DATASETS: dict[str, type[DatasetLoader]] = {
    TorchvisionMnistLoader.name: TorchvisionMnistLoader,
    Mnist5kLoader.name: Mnist5kLoader,
    Cifar100Loader.name: Cifar100Loader,
    LfwLoader.name: LfwLoader,
    DvsGestureLoader.name: DvsGestureLoader,
    LfwSubsetLoader.name: LfwSubsetLoader,
    NmnistEmulatedLoader.name: NmnistEmulatedLoader,
}
"""Registry of dataset name -> loader class."""


def _loader(name: str) -> type[DatasetLoader]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    return DATASETS[name]


def dataset_kind(name: str) -> str:
    """ "image" or "events", known without loading anything."""
    return _loader(name).kind


def judge_arch(name: str) -> str:
    """Registry name of the judge model that scores reconstructions of this dataset."""
    return _loader(name).judge


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
    """Load once per key; clients reload the same data often."""
    return DATASETS[name]().load(split, data_root, options)


def load_dataset(
    name: str,
    split: str = "train",
    data_root: str | os.PathLike[str] | None = None,
    options: DataOptions | None = None,
) -> DataSplit:
    """Load a registered dataset split (cached in-process; do not modify the returned tensors)."""
    _loader(name)
    check_split(split)
    root = None if data_root is None else os.fspath(data_root)
    return _load_cached(name, split, root, options or DataOptions())


def clear_dataset_cache() -> None:
    """Forget cached loads (e.g. after files were added, or in tests)."""
    _load_cached.cache_clear()
    _mnist5k_splits.cache_clear()
    _lfw_subset_splits.cache_clear()
    decode_lfw_folder.cache_clear()
