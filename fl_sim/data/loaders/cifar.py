"""CIFAR-100: the python-version pickles read offline by ``torchvision.datasets.CIFAR100``."""

from __future__ import annotations

import os
from typing import ClassVar

import torch

from fl_sim.data.loaders.base import (
    DataOptions,
    DataSplit,
    check_split,
    missing_files_reason,
    uint8_images_to_float,
)

CIFAR100_FOLDER: str = "cifar-100-python"
"""Folder under ``data_root`` that extracting ``cifar-100-python.tar.gz`` creates."""

CIFAR100_FILES: tuple[str, ...] = ("train", "test", "meta")
"""Pickles torchvision's CIFAR100 needs in :data:`CIFAR100_FOLDER` (it md5-checks all three)."""


class Cifar100Loader:
    """CIFAR-100 (50000 train / 10000 test, 32x32 RGB) with its 100 fine labels."""

    name: ClassVar[str] = "cifar100"
    kind: ClassVar[str] = "image"
    judge: ClassVar[str] = "lenet5"
    num_classes: ClassVar[int] = 100

    @staticmethod
    def _missing_files_message(data_root: str | None, missing: list[str]) -> str:
        """Explain exactly which files must be placed where (nothing is downloaded)."""
        root, reason = missing_files_reason(data_root, missing)
        return (
            f"CIFAR-100 files not found ({reason}). Extract cifar-100-python.tar.gz (the "
            f"python version) so that {os.path.join(root, CIFAR100_FOLDER)}/"
            f"{{{','.join(CIFAR100_FILES)}}} exist, and pass that data_root. Nothing is "
            "downloaded."
        )

    def load(self, split: str, data_root: str | None, options: DataOptions) -> DataSplit:
        """Read the split's uint8 array directly (no per-image PIL); ``options`` do not apply."""
        from torchvision.datasets import CIFAR100

        check_split(split)
        if data_root is None:
            raise FileNotFoundError(self._missing_files_message(None, list(CIFAR100_FILES)))
        folder = os.path.join(data_root, CIFAR100_FOLDER)
        missing = [f for f in CIFAR100_FILES if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise FileNotFoundError(self._missing_files_message(data_root, missing))
        try:
            cifar = CIFAR100(root=data_root, train=split == "train", download=False)
        except RuntimeError as err:  # all files exist, so torchvision's md5 check failed
            expected = {name: md5 for name, md5 in CIFAR100.train_list + CIFAR100.test_list}
            expected[CIFAR100.meta["filename"]] = CIFAR100.meta["md5"]
            raise ValueError(
                f"the CIFAR-100 files in {folder} fail torchvision's md5 check (expected "
                f"{expected}): they are not the original python-version pickles; extract "
                "cifar-100-python.tar.gz (md5 eb9058c3a382ffc7106e4002c42a8d85) there again"
            ) from err
        labels = torch.as_tensor(cifar.targets, dtype=torch.int64)
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"CIFAR-100 {split} fine labels must be in [0, {self.num_classes - 1}], "
                f"got {bad.unique().tolist()}"
            )
        return DataSplit(
            name=self.name,
            inputs=uint8_images_to_float(torch.from_numpy(cifar.data)),  # [N,32,32,3] HWC
            labels=labels,
            num_classes=self.num_classes,
        )
