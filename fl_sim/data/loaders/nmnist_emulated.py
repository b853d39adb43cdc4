"""``nmnist-emulated``: N-MNIST-style event recordings emulated from mnist5k's real digits.

Every digit of mnist5k goes through :func:`fl_sim.data.event_emulation.emulate_events` (three
saccades on a 34x34 sensor, per-pixel log-intensity change thresholds, ON/OFF polarity, as
the v2e and ESIM emulators do; see that module for the model and citations), then through
the same event pipeline as DVS128 Gesture (:func:`fl_sim.data.loaders.events.event_frames`).
These are emulated events, not the N-MNIST recordings (Orchard et al. 2015), and are never
reported as such. Emulation costs ~25 ms per digit, so frames are cached on disk per data
option (``<cache>/datasets/``), bit-packed, and memory-mapped by every process that loads them
(:mod:`fl_sim.data.loaders.frames`: one copy per machine, unpacked per batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from fl_sim.data.event_emulation import DEFAULT_DURATION_US, DEFAULT_SENSOR_SIZE, emulate_events
from fl_sim.data.loaders.base import DataOptions, DataSplit
from fl_sim.data.loaders.events import downsampled_size, event_frames
from fl_sim.data.loaders.frames import PackedFrames, packed_bytes, read_packed, write_packed
from fl_sim.data.loaders.mnist import _mnist5k_splits

NMNIST_EMULATED_VERSION: int = 1
"""Bump when the emulation or its parameters change: old caches are then ignored."""

CACHE_FORMAT: int = 2
"""Layout of the cache file: 1 = ``.npz`` of the whole split's bits and its shape; 2 = a
memory-mappable ``.npy`` of uint8 [N, bytes per sample], bits packed per sample."""

EMULATION_SEED: int = 0
"""Base seed of the per-digit emulation seeds (the default emulator draws no noise)."""


def cache_file(split: str, options: DataOptions, fmt: int = CACHE_FORMAT) -> Path:
    """Where the frames of one split under ``options`` are cached (in layout ``fmt``)."""
    version = NMNIST_EMULATED_VERSION
    stem = f"nmnist-emulated-v{version}-{split}-T{options.frames}-d{options.downsample}"
    name = f"{stem}.npz" if fmt == 1 else f"{stem}.f{fmt}.npy"
    return options.cache_path / "datasets" / name


def frames_shape(n: int, options: DataOptions) -> tuple[int, int, int, int, int]:
    """Shape [N, T, 2, H, W] of ``n`` digits' frames under ``options``."""
    width, height = downsampled_size(DEFAULT_SENSOR_SIZE, options.downsample)
    return (n, options.frames, 2, height, width)


def emulate_split(digits: DataSplit, split: str, options: DataOptions) -> PackedFrames:
    """Binary frames [N,T,2,H,W] of every digit of ``digits``, packed (with a progress bar)."""
    from fl_sim.ops.progress import steps

    offset = 0 if split == "train" else 1_000_000
    n = len(digits)
    shape = frames_shape(n, options)
    bits = np.empty((n, packed_bytes(shape[1:])), dtype=np.uint8)
    for i in steps(range(n), f"emulating nmnist-emulated {split}", n, unit="digits"):
        image = digits.take(i)[0].numpy()
        events = emulate_events(image, seed=EMULATION_SEED + offset + i)
        frames = event_frames(events, DEFAULT_SENSOR_SIZE, options, duration_us=DEFAULT_DURATION_US)
        bits[i] = PackedFrames.pack(frames.unsqueeze(0)).bits[0]
    return PackedFrames(bits, shape)


class NmnistEmulatedLoader:
    """mnist5k's 5,000 real digits as emulated event recordings: frames [N,T,2,34,34]
    (or downsampled), 10 classes, the same 4,000 / 1,000 split as mnist5k."""

    name: ClassVar[str] = "nmnist-emulated"
    kind: ClassVar[str] = "events"
    judge: ClassVar[str] = "dvs-gesture-snn"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Frames memory-mapped from the on-disk cache, emulating (once) when it is missing
        (a cache in the older ``.npz`` layout is converted, not re-emulated)."""
        digits = _mnist5k_splits()[split]
        path = cache_file(split, options)
        shape = frames_shape(len(digits), options)
        frames = read_packed(path, shape)
        if frames is None:
            packed = _read_legacy_cache(cache_file(split, options, fmt=1), shape)
            if packed is None:
                packed = emulate_split(digits, split, options)
            write_packed(path, packed)
            frames = read_packed(path, shape)
            if frames is None:
                raise OSError(f"cannot read back the frames cache just written at {path}")
        return DataSplit(self.name, frames, digits.labels, digits.num_classes)


def _read_legacy_cache(path: Path, shape: tuple[int, ...]) -> PackedFrames | None:
    """Frames of a layout-1 cache (bits of the whole split, row-major), or None when absent,
    unreadable or of another shape."""
    try:
        with np.load(path, allow_pickle=False) as blob:
            stored = tuple(int(v) for v in blob["shape"])
            if stored != shape:
                return None
            bits = np.unpackbits(blob["bits"], count=int(np.prod(shape)))
    except (OSError, KeyError, ValueError):
        return None
    return PackedFrames.pack(bits.reshape(shape))
