"""``lfw-subset``: the 200 real LFW crops scikit-image ships (offline), as a face / non-face task.

scikit-image's ``data.lfw_subset()`` holds 100 faces randomly drawn from LFW and 100 non-face
crops of the same photographs' backgrounds, all 25x25 gray. It carries **no identity labels**,
so it cannot stand in for LFW identity recognition. The task defined on it is the one the
data supports: label 1 = face, 0 = non-face; the judge (the LFW judge architecture) scores a
reconstruction as leaked when it recognises face vs background correctly.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np
import torch

from fl_sim.data.loaders.base import DataOptions, DataSplit

LFW_SUBSET_SEED: int = 0
"""Seed of the fixed stratified train/test split."""

LFW_SUBSET_TRAIN_PER_CLASS: int = 80
"""Crops per class in the train split; the other 20 per class are test."""

FACE, NON_FACE = 1, 0


@functools.cache
def _lfw_subset_splits() -> dict[str, DataSplit]:
    from skimage.data import lfw_subset

    crops = np.asarray(lfw_subset(), dtype=np.float64)  # (200, 25, 25), faces first
    if crops.max() > 1.0:  # scikit-image documents uint8; some versions return [0, 1] floats
        crops = crops / 255.0
    labels = np.where(np.arange(len(crops)) < len(crops) // 2, FACE, NON_FACE).astype(np.int64)
    rng = np.random.default_rng(LFW_SUBSET_SEED)
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for cls in (NON_FACE, FACE):
        members = rng.permutation(np.flatnonzero(labels == cls))
        parts["train"].append(members[:LFW_SUBSET_TRAIN_PER_CLASS])
        parts["test"].append(members[LFW_SUBSET_TRAIN_PER_CLASS:])
    out = {}
    for split, chunks in parts.items():
        order = rng.permutation(np.concatenate(chunks))
        out[split] = DataSplit(
            name=LfwSubsetLoader.name,
            inputs=torch.from_numpy(crops[order, None].astype(np.float32)),
            labels=torch.from_numpy(labels[order]),
            num_classes=2,
        )
    return out


class LfwSubsetLoader:
    """scikit-image's 100 LFW faces + 100 LFW background crops, 1x25x25, face (1) / non-face
    (0); 80 per class train, 20 per class test (seed :data:`LFW_SUBSET_SEED`)."""

    name: ClassVar[str] = "lfw-subset"
    kind: ClassVar[str] = "image"
    judge: ClassVar[str] = "resnet50-arcface"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Return the fixed split; ``data_root`` is ignored (the data ships in scikit-image)."""
        return _lfw_subset_splits()[split]
