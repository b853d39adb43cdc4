"""A run's dataset split: the dataset its config names, loaded with its data options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fl_sim.data.registry import DataSplit, load_dataset

if TYPE_CHECKING:
    from fl_sim.config import RunConfig


def dataset_split(cfg: RunConfig, split: str) -> DataSplit:
    """The run's dataset split, loaded with the run's data options (cached)."""
    return load_dataset(cfg.dataset, split, cfg.data_root or None, cfg.data_options)
