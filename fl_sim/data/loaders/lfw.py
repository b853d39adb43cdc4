"""LFW identities: face images ``<Name>/*.jpg`` read with ``torchvision.datasets.ImageFolder``,
centre-cropped to the face, resized to 32x32 and split 80/20 at random (as the paper does)."""

from __future__ import annotations

import functools
import os
from typing import ClassVar

import numpy as np
import torch

from fl_sim.data.loaders.base import DataOptions, DataSplit, check_split

LFW_FOLDERS: tuple[str, ...] = ("lfw", "lfw_funneled", os.path.join("lfw-py", "lfw_funneled"))
"""Folders under ``data_root`` searched in this order; the first holding a ``<Name>/*.jpg`` is
used: ``lfw`` (extracted lfw.tgz), ``lfw_funneled`` (extracted lfw-funneled.tgz), and
torchvision LFWPeople's extracted layout ``lfw-py/lfw_funneled``."""

LFW_CROP: int = 150
"""Side of the centre crop taken from the 250x250 original: the face, without most background."""

LFW_IMAGE_SIZE: int = 32
"""Side of the square RGB images the loader returns (antialiased resize of the crop)."""

LFW_SPLIT_SEED: int = 0
"""Fixed seed of the random image-level train/test split (the split never changes)."""

LFW_TRAIN_FRACTION: float = 0.8
"""Share of all images that goes to train (floor); the rest is test."""


def _has_identity_jpeg(folder: str) -> bool:
    """Whether ``folder`` holds at least one ``<Name>/*.jpg``."""
    if not os.path.isdir(folder):
        return False
    for entry in os.scandir(folder):
        if entry.is_dir() and any(f.lower().endswith(".jpg") for f in os.listdir(entry.path)):
            return True
    return False


def find_lfw_folder(data_root: str | None) -> str:
    """The first of :data:`LFW_FOLDERS` under ``data_root`` with identity folders of JPEGs."""
    root = "<data_root>" if data_root is None else data_root
    candidates = [os.path.join(root, folder) for folder in LFW_FOLDERS]
    if data_root is not None:
        for folder in candidates:
            if _has_identity_jpeg(folder):
                return folder
    reason = "no data_root was given" if data_root is None else "none of them holds one"
    raise FileNotFoundError(
        f"LFW images not found: looked for <Name>/*.jpg in {', '.join(candidates)} ({reason}). "
        f"Extract lfw.tgz or lfw-funneled.tgz into {root} (giving {candidates[0]}/<Name>/"
        "<Name>_0001.jpg, ...) and pass that data_root. Nothing is downloaded."
    )


@functools.lru_cache(maxsize=2)
def decode_lfw_folder(folder: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode every ``<Name>/*.jpg`` once (both splits use it): uint8 [N,3,S,S] images,
    int64 labels (index of the identity in sorted order), and the identity names."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    from fl_sim.ops.progress import steps

    transform = v2.Compose(  # on the PIL image: ~40x faster than antialiasing a uint8 tensor
        [
            v2.CenterCrop(LFW_CROP),
            v2.Resize((LFW_IMAGE_SIZE, LFW_IMAGE_SIZE), antialias=True),
            v2.PILToTensor(),  # uint8 [3, S, S]
        ]
    )
    faces = ImageFolder(
        folder, transform=transform, is_valid_file=lambda path: path.lower().endswith(".jpg")
    )
    images = torch.empty((len(faces), 3, LFW_IMAGE_SIZE, LFW_IMAGE_SIZE), dtype=torch.uint8)
    for i in steps(range(len(faces)), f"LFW {folder}", len(faces), "images"):
        images[i] = faces[i][0]
    labels = torch.as_tensor(faces.targets, dtype=torch.int64)
    return images, labels, tuple(faces.classes)


class LfwLoader:
    """LFW face identification: every image of every identity (13,233 images, 5,749 classes
    for the full LFW), RGB 32x32 centre crops, split 80/20 at image level.

    LFW has no standard identity-classification split, so, as the paper does, all images are
    shuffled with :data:`LFW_SPLIT_SEED` and the first 80% are train, the rest test; an
    identity with a single image is therefore only in train or only in test, and others may
    be too. ``num_classes`` counts all identity folders, in both splits.
    """

    name: ClassVar[str] = "lfw"
    kind: ClassVar[str] = "image"
    judge: ClassVar[str] = "resnet50-arcface"

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Decode the folder found by :func:`find_lfw_folder` (cached) and return one split;
        ``options`` do not apply to images."""
        check_split(split)
        folder = find_lfw_folder(data_root)
        images, labels, classes = decode_lfw_folder(os.path.abspath(folder))
        total = len(labels)
        n_train = int(total * LFW_TRAIN_FRACTION)
        if n_train == 0 or n_train == total:
            raise ValueError(
                f"LFW folder {folder} holds {total} image(s): too few for an "
                f"{LFW_TRAIN_FRACTION:.0%} train / rest test split with both splits non-empty"
            )
        order = torch.from_numpy(np.random.default_rng(LFW_SPLIT_SEED).permutation(total))
        picked = order[:n_train] if split == "train" else order[n_train:]
        return DataSplit(
            name=self.name,
            inputs=images[picked].to(torch.float32).div_(255.0),
            labels=labels[picked],
            num_classes=len(classes),
        )
