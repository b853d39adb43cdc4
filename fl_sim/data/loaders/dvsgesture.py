"""DVS128 Gesture: tonic's preprocessed recordings (one ``.npy`` per gesture) read offline by
``tonic.datasets.DVSGesture`` and binned into binary spike frames [T, 2, H, W], kept as bits
and cached per recordings and data options under ``<cache>/datasets/``: binning runs once, and
every process (client actors, ServerApp) memory-maps the same copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fl_sim.atomic_file import atomic_write
from fl_sim.data.loaders.base import DataOptions, DataSplit, check_split
from fl_sim.data.loaders.events import downsampled_size, event_frames
from fl_sim.data.loaders.frames import PackedFrames, packed_bytes, read_packed, write_packed

DVSGESTURE_FOLDER: str = "DVSGesture"
"""Folder under ``data_root`` that tonic's DVSGesture reads (its ``save_to`` + class name)."""

DVSGESTURE_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("ibmGestureTrain.tar.gz", "ibmGestureTrain"),
    "test": ("ibmGestureTest.tar.gz", "ibmGestureTest"),
}
"""Per split: the archive tonic requires to exist (not hashed) and the folder it extracts to."""

DVSGESTURE_MIN_NPY: int = 100
"""tonic downloads unless the split folder holds at least this many ``.npy`` recordings."""

DVSGESTURE_NUM_CLASSES: int = 11
"""Ten gestures plus "other gestures"; files are named ``0.npy`` ... ``10.npy`` by label."""

DVSGESTURE_SENSOR_SIZE: tuple[int, int, int] = (128, 128, 2)
"""(width, height, polarities), as tonic's ``DVSGesture.sensor_size`` (known without tonic)."""

DVSGESTURE_CACHE_VERSION: int = 1
"""Bump when the binning changes: frames cached by an older version are then ignored."""


def cache_file(data_root: str, split: str, options: DataOptions) -> Path:
    """Where the packed frames of ``split`` under ``options`` are cached (``.f2.npy``, with
    the labels beside it in ``.labels.npy``). The name holds a digest of the recordings'
    absolute paths, sizes and modification times: other or changed files miss the cache."""
    folder = Path(data_root, DVSGESTURE_FOLDER, DVSGESTURE_SPLITS[split][1]).resolve()
    digest = hashlib.sha256(str(folder).encode())
    for npy in sorted(folder.glob("**/*.npy")):
        stat = npy.stat()
        digest.update(f"\0{npy.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    name = (
        f"dvsgesture-v{DVSGESTURE_CACHE_VERSION}-{split}-T{options.frames}-d{options.downsample}"
        f"-{digest.hexdigest()[:16]}.f2.npy"
    )
    return options.cache_path / "datasets" / name


def _labels_file(frames_file: Path) -> Path:
    """The labels' cache file beside the frames' one."""
    return frames_file.with_name(frames_file.name.replace(".f2.npy", ".labels.npy"))


def _read_cache(path: Path, options: DataOptions) -> DataSplit | None:
    """The cached split (frames memory-mapped, shared by every process), or None."""
    try:
        labels = np.load(_labels_file(path), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if labels.ndim != 1 or labels.dtype != np.int64:
        return None
    side = downsampled_size(DVSGESTURE_SENSOR_SIZE[:2], options.downsample)
    frames = read_packed(path, (len(labels), options.frames, 2, side[1], side[0]))
    if frames is None:
        return None
    return DataSplit(
        DvsGestureLoader.name, frames, torch.from_numpy(labels), DVSGESTURE_NUM_CLASSES
    )


def _missing_files(folder: str, split: str) -> list[str]:
    """What tonic's existence check would miss for ``split`` (empty when it would pass)."""
    archive, extracted = DVSGESTURE_SPLITS[split]
    missing = []
    if not os.path.isfile(os.path.join(folder, archive)):
        missing.append(os.path.join(folder, archive))
    found = len(list(Path(folder, extracted).glob("**/*.npy")))
    if found < DVSGESTURE_MIN_NPY:
        missing.append(
            f"{os.path.join(folder, extracted)}/userNN_<lighting>/<label>.npy "
            f"(found {found}, need at least {DVSGESTURE_MIN_NPY})"
        )
    return missing


def _missing_files_message(data_root: str | None, split: str, missing: list[str]) -> str:
    """Explain exactly which files must be placed where (nothing is downloaded)."""
    folder = os.path.join("<data_root>" if data_root is None else data_root, DVSGESTURE_FOLDER)
    archive, extracted = DVSGESTURE_SPLITS[split]
    reason = "no data_root was given" if data_root is None else f"missing: {'; '.join(missing)}"
    return (
        f"DVS128 Gesture {split} files not found ({reason}). Put tonic's {archive} at "
        f"{os.path.join(folder, archive)} and extract it there, giving "
        f"{os.path.join(folder, extracted)}/userNN_<lighting>/<label>.npy (tonic requires the "
        "archive to exist but does not hash it), and pass that data_root. Nothing is downloaded."
    )


class DvsGestureLoader:
    """DVS128 Gesture (tonic's version: 1077 train / 264 test recordings, 11 classes), each
    recording binned into ``options.frames`` binary frames over its own span (tonic ToFrame)."""

    name: ClassVar[str] = "dvsgesture"
    kind: ClassVar[str] = "events"
    judge: ClassVar[str] = "dvs-gesture-snn"
    num_classes: ClassVar[int] = DVSGESTURE_NUM_CLASSES

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Check the files (tonic would otherwise download), then the frames memory-mapped
        from the cache of these recordings, binning them (once) when it is missing."""
        check_split(split)
        if data_root is None:
            raise FileNotFoundError(_missing_files_message(None, split, []))
        missing = _missing_files(os.path.join(data_root, DVSGESTURE_FOLDER), split)
        if missing:
            raise FileNotFoundError(_missing_files_message(data_root, split, missing))
        path = cache_file(data_root, split, options)
        cached = _read_cache(path, options)
        if cached is not None:
            return cached
        binned = self._bin(split, data_root, options)
        labels = _labels_file(path)  # written first: a reader needs both files
        with atomic_write(labels, durable=False) as fh:
            np.save(fh, binned.labels.numpy())
        assert binned.packed is not None
        write_packed(path, binned.packed)
        reread = _read_cache(path, options)
        return binned if reread is None else reread

    def _bin(self, split: str, data_root: str, options: DataOptions) -> DataSplit:
        """Bin every recording in (user, lighting, label) order into frames [N, T, 2, H, W]."""
        from tonic.datasets import DVSGesture

        from fl_sim.ops.progress import steps

        def refuse_download(self: DVSGesture) -> None:
            raise FileNotFoundError(_missing_files_message(data_root, split, ["(tonic)"]))

        # A DVSGesture that can never download (a safety net behind our check). tonic reads
        # <save_to>/<class name>/, so the subclass must keep the name "DVSGesture".
        offline = type("DVSGesture", (DVSGesture,), {"download": refuse_download})
        gestures = offline(save_to=data_root, train=split == "train")
        # tonic lists files in os.walk order, which depends on the file system: fix the order.
        order = sorted(
            range(len(gestures)),
            key=lambda i: (gestures.users[i], gestures.lighting[i], gestures.targets[i]),
        )
        labels = torch.as_tensor([gestures.targets[i] for i in order], dtype=torch.int64)
        bad = [gestures.data[i] for i in order if not 0 <= gestures.targets[i] < self.num_classes]
        if bad:
            raise ValueError(
                f"DVS Gesture files must be named <label>.npy with label in "
                f"[0, {self.num_classes - 1}], got {bad[:5]}"
            )
        sensor_size = DVSGesture.sensor_size  # (128, 128, 2): width, height, polarities
        if tuple(sensor_size) != DVSGESTURE_SENSOR_SIZE:
            raise RuntimeError(f"tonic's DVSGesture sensor is {sensor_size}, expected 128x128x2")
        width, height = downsampled_size(sensor_size, options.downsample)
        # stored as bits: float32 frames of the train split at T=20 would take 2.8 GB
        shape = (len(order), options.frames, 2, height, width)
        bits = np.empty((len(order), packed_bytes(shape[1:])), dtype=np.uint8)
        for row, i in enumerate(steps(order, f"DVS Gesture {split}", len(order), "recordings")):
            events, _ = gestures[i]  # structured x, y (int16), p (bool), t (int64, us)
            if np.any(np.diff(events["t"]) < 0):  # tonic's ToFrame needs time order
                events = events[np.argsort(events["t"], kind="stable")]
            frames = event_frames(events, sensor_size, options)
            bits[row] = PackedFrames.pack(frames.unsqueeze(0)).bits[0]
        inputs = PackedFrames(bits, shape)
        return DataSplit(name=self.name, inputs=inputs, labels=labels, num_classes=self.num_classes)
