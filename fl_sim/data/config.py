"""The data role's keys: which dataset a run federates and how it is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fl_sim.config import Section, at_least_one, check_choice
from fl_sim.names import dataset_kinds

if TYPE_CHECKING:  # torch behind it: imported where used, after the cheap checks
    from fl_sim.data.loaders.base import DataOptions


@dataclass(frozen=True)
class DataConfig(Section):
    """The dataset, where its files are, and the options that change what it loads."""

    ROLE: ClassVar[str] = "data"

    dataset: str = "mnist5k"
    data_root: str = ""  # for datasets the user provides (e.g. mnist)
    # event data: time bins per recording (the SNN runs that many steps on the frames) and
    # the integer spatial downsampling factor of the sensor
    frames: int = 20
    downsample: int = 1
    cache_dir: str = ""  # judge and derived-data cache; "" = $FL_SIM_CACHE or ~/.cache/fl-sim

    def __post_init__(self) -> None:
        at_least_one(self, "frames", "downsample")
        check_choice("dataset", self.dataset, tuple(dataset_kinds()))

    @property
    def kind(self) -> str:
        """ "image" or "events" (the dataset's kind)."""
        return dataset_kinds()[self.dataset]

    @property
    def options(self) -> DataOptions:
        """What the dataset loader needs beyond the name (part of its cache key)."""
        from fl_sim.data.loaders.base import DataOptions

        return DataOptions(self.frames, self.downsample, self.cache_dir)

    @property
    def cache_path(self) -> Path:
        """The cache directory in use (judges, emulated events)."""
        return self.options.cache_path
