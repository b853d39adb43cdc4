"""``nmnist-emulated``: N-MNIST-style event recordings emulated from mnist5k's real digits.

Every digit of mnist5k goes through :func:`fl_sim.data.event_emulation.emulate_events` (three
saccades on a 34x34 sensor, per-pixel log-intensity change thresholds, ON/OFF polarity, as
the v2e and ESIM emulators do; see that module for the model and citations), then through
the same event pipeline as DVS128 Gesture (:func:`fl_sim.data.loaders.events.event_frames`).
These are emulated events, not the N-MNIST recordings (Orchard et al. 2015), and are never
reported as such. Emulation costs ~25 ms per digit, so frames are cached on disk per data
option (``<cache>/datasets/``), bit-packed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fl_sim.data.event_emulation import DEFAULT_DURATION_US, DEFAULT_SENSOR_SIZE, emulate_events
from fl_sim.data.loaders.base import DataOptions, DataSplit
from fl_sim.data.loaders.events import event_frames
from fl_sim.data.loaders.mnist import _mnist5k_splits

NMNIST_EMULATED_VERSION: int = 1
"""Bump when the emulation or its parameters change: old caches are then ignored."""

EMULATION_SEED: int = 0
"""Base seed of the per-digit emulation seeds (the default emulator draws no noise)."""


def cache_file(split: str, options: DataOptions) -> Path:
    """Where the frames of one split under ``options`` are cached."""
    name = (
        f"nmnist-emulated-v{NMNIST_EMULATED_VERSION}-{split}-T{options.frames}"
        f"-d{options.downsample}.npz"
    )
    return options.cache_path / "datasets" / name


def emulate_split(digits: DataSplit, split: str, options: DataOptions) -> torch.Tensor:
    """Binary frames [N,T,2,H,W] of every digit of ``digits`` (with a progress bar)."""
    from fl_sim.ops.progress import steps

    offset = 0 if split == "train" else 1_000_000
    frames = []
    n = len(digits)
    for i in steps(range(n), f"emulating nmnist-emulated {split}", n, unit="digits"):
        image = digits.inputs[i, 0].numpy()
        events = emulate_events(image, seed=EMULATION_SEED + offset + i)
        frames.append(
            event_frames(events, DEFAULT_SENSOR_SIZE, options, duration_us=DEFAULT_DURATION_US)
        )
    return torch.stack(frames)


class NmnistEmulatedLoader:
    """mnist5k's 5,000 real digits as emulated event recordings: frames [N,T,2,34,34]
    (or downsampled), 10 classes, the same 4,000 / 1,000 split as mnist5k."""

    name: ClassVar[str] = "nmnist-emulated"
    kind: ClassVar[str] = "events"
    judge: ClassVar[str] = "dvs-gesture-snn"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Frames from the on-disk cache, emulating (once) when it is missing."""
        digits = _mnist5k_splits()[split]
        path = cache_file(split, options)
        frames = _read_cache(path, len(digits))
        if frames is None:
            frames = emulate_split(digits, split, options)
            _write_cache(path, frames)
        return DataSplit(self.name, frames, digits.labels, digits.num_classes)


def _read_cache(path: Path, n: int) -> torch.Tensor | None:
    """The cached frames, or None when absent or unreadable (then they are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as blob:
            shape = tuple(int(v) for v in blob["shape"])
            bits = np.unpackbits(blob["bits"], count=int(np.prod(shape)))
    except (OSError, KeyError, ValueError):
        return None
    if shape[0] != n:
        return None
    return torch.from_numpy(bits.reshape(shape).astype(np.float32))


def _write_cache(path: Path, frames: torch.Tensor) -> None:
    """Bit-pack binary frames and write atomically (concurrent loaders may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.npz")
    bits = np.packbits(frames.numpy().astype(np.uint8).ravel())
    np.savez(tmp, bits=bits, shape=np.asarray(frames.shape, dtype=np.int64))
    os.replace(tmp, path)
