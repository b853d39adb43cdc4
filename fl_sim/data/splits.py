"""A run's dataset split: the dataset its config names, loaded with its data options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fl_sim.data.registry import DataSplit, load_dataset

if TYPE_CHECKING:
    from fl_sim.data.config import DataConfig


def dataset_split(data: DataConfig, split: str) -> DataSplit:
    """The run's dataset split, loaded with the run's data options (cached)."""
    return load_dataset(data.dataset, split, data.data_root or None, data.options)
