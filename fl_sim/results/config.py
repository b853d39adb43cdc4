"""The results role's keys: where a run writes, and what beyond its scores it keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fl_sim.config import Section


@dataclass(frozen=True)
class ResultsConfig(Section):
    """The output directory, how it is (re)used, and the optional outputs."""

    ROLE: ClassVar[str] = "results"

    out: str = "results"
    overwrite: bool = False  # replace results already in ``out``
    resume: bool = False  # continue the run recorded in ``out`` (fl-sim run --resume)
    grids: bool = True  # write ground truth vs reconstruction grids per round
    # store every captured update (and its ground truth) under out/captures, owner-only:
    # they are sensitive, so only when asked
    save_captures: bool = False
