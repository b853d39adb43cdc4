"""DVS128 Gesture: tonic's preprocessed recordings (one ``.npy`` per gesture) read offline by
``tonic.datasets.DVSGesture`` and binned into binary spike frames [T, 2, H, W], kept as bits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fl_sim.data.loaders.base import DataOptions, DataSplit, check_split
from fl_sim.data.loaders.events import downsampled_size, event_frames
from fl_sim.data.loaders.frames import PackedFrames, packed_bytes

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
        """Check the files (tonic would otherwise download), then bin every recording in
        (user, lighting, label) order into inputs [N, T, 2, H, W]."""
        from tonic.datasets import DVSGesture

        from fl_sim.ops.progress import steps

        check_split(split)
        if data_root is None:
            raise FileNotFoundError(_missing_files_message(None, split, []))
        missing = _missing_files(os.path.join(data_root, DVSGESTURE_FOLDER), split)
        if missing:
            raise FileNotFoundError(_missing_files_message(data_root, split, missing))

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
