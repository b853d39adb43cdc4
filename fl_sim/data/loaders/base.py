"""What every loader returns and takes: a whole split in memory, and the data options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch

from fl_sim.data.loaders.frames import Index, PackedFrames

SPLITS: tuple[str, ...] = ("train", "test")
"""Allowed values of ``split``."""

KINDS: tuple[str, ...] = ("image", "events")
"""Data kinds: static images [N,C,H,W], or event frames [N,T,2,H,W]."""


def check_split(split: str) -> None:
    """Reject a split name other than those in :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {list(SPLITS)}")


def missing_files_reason(data_root: str | None, missing: list[str]) -> tuple[str, str]:
    """(root to show, why) for a missing-files message: no root given, or what is missing."""
    if data_root is None:
        return "<data_root>", "no data_root was given"
    return data_root, f"missing: {', '.join(missing)}"


def default_cache_dir() -> str:
    """Where judges and derived datasets are cached: $FL_SIM_CACHE, else ~/.cache/fl-sim."""
    return os.environ.get("FL_SIM_CACHE", str(Path.home() / ".cache" / "fl-sim"))


@dataclass(frozen=True)
class DataOptions:
    """Settings that change what a loader returns (part of every cache key)."""

    frames: int = 20  # time bins T of event data (tonic ToFrame n_time_bins)
    downsample: int = 1  # event data: integer spatial downsampling factor of the sensor
    cache_dir: str = ""  # where derived data (emulated events) is cached; "" = default

    @property
    def cache_path(self) -> Path:
        """The cache directory in use."""
        return Path(self.cache_dir or default_cache_dir()).expanduser()

    def __post_init__(self) -> None:
        for name in ("frames", "downsample"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class DataSplit:
    """A whole dataset split in memory; treat it as read-only (results are cached).

    Samples are float32 images [N,C,H,W] in [0, 1], or binary event frames [N,T,C,H,W]
    (1 where a pixel saw at least one event of that polarity in the time bin). Event frames
    may be stored as :class:`PackedFrames` (bits, often a memory-mapped cache shared by every
    process): :meth:`take` gives float32 samples of any split, converted per batch.
    """

    __slots__ = ("_float", "_samples", "labels", "name", "num_classes")

    def __init__(
        self,
        name: str,
        inputs: torch.Tensor | PackedFrames,
        labels: torch.Tensor,
        num_classes: int,
    ) -> None:
        """Check the documented shapes and dtypes; ``inputs`` is float32 or packed frames."""
        if isinstance(inputs, PackedFrames):
            shape: tuple[int, ...] = inputs.shape
        elif inputs.ndim in (4, 5) and inputs.dtype == torch.float32:
            shape = tuple(inputs.shape)
        else:
            raise ValueError(
                f"inputs must be float32 [N, C, H, W] or [N, T, C, H, W], got "
                f"{inputs.dtype} {tuple(inputs.shape)}"
            )
        if labels.ndim != 1 or labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 [N], got {labels.dtype} {tuple(labels.shape)}")
        if shape[0] != labels.shape[0]:
            raise ValueError(f"inputs ({shape[0]}) and labels ({labels.shape[0]}) differ in length")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.name = name
        self._samples = inputs
        self._float: torch.Tensor | None = None
        self.labels = labels
        self.num_classes = num_classes

    def __repr__(self) -> str:
        """Name, sample shape, storage and size (never the data)."""
        stored = "bits" if isinstance(self._samples, PackedFrames) else "float32"
        return f"DataSplit({self.name!r}, {self.shape}, {stored}, {self.num_classes} classes)"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of all samples as float32: (N, C, H, W) or (N, T, C, H, W)."""
        return tuple(int(s) for s in self._samples.shape)

    @property
    def packed(self) -> PackedFrames | None:
        """The bit-packed frames when the split stores them so, else None."""
        return self._samples if isinstance(self._samples, PackedFrames) else None

    @property
    def inputs(self) -> torch.Tensor:
        """All samples as one float32 tensor: the stored tensor itself, or, for packed
        frames, their float32 copy, unpacked on first use and kept (32x the bits, as much as
        before packing): code that reads batches uses :meth:`take` and never pays for it."""
        if not isinstance(self._samples, PackedFrames):
            return self._samples
        if self._float is None:
            self._float = self._samples.to_float()
        return self._float

    def take(self, index: Index) -> torch.Tensor:
        """float32 samples at ``index`` (an int, a slice, or integer indices), exactly what
        ``inputs[index]`` holds; packed frames are unpacked for these samples only."""
        if self._float is not None:
            return self._float[index]
        if isinstance(self._samples, PackedFrames):
            return self._samples.take(index)
        return self._samples[index]

    @property
    def kind(self) -> str:
        """ "image" for [N,C,H,W], "events" for [N,T,C,H,W]."""
        return "events" if len(self.shape) == 5 else "image"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image or one event frame."""
        c, h, w = self.shape[-3:]
        return (c, h, w)

    @property
    def time_steps(self) -> int:
        """T of event data; 1 for images."""
        return self.shape[1] if self.kind == "events" else 1

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.labels.shape[0])


class DatasetLoader(Protocol):
    """Loads one named dataset split; registered in :data:`fl_sim.data.registry.DATASETS`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # one of KINDS, known before loading (config validation)
    judge: ClassVar[str]  # registry name of the judge model of this dataset

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Return the whole ``split`` ("train" or "test") as a :class:`DataSplit`."""
        ...


def time_major(inputs: torch.Tensor) -> torch.Tensor:
    """What models take: sample-major event frames [B,T,C,H,W] as [T,B,C,H,W]; images as is."""
    return inputs.transpose(0, 1) if inputs.dim() == 5 else inputs


def uint8_images_to_float(images: torch.Tensor) -> torch.Tensor:
    """Turn uint8 [N, H, W] (gray) or [N, H, W, C] pixels into float32 [N, C, H, W] in [0, 1]."""
    x = images.to(torch.float32).div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.contiguous()
