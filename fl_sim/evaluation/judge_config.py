"""The judge role's keys: overrides of the recipe the dataset's judge is trained with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fl_sim.config import Section


@dataclass(frozen=True)
class JudgeConfig(Section):
    """0 keeps the default of the dataset's judge (fl_sim/evaluation/judge_specs.py)."""

    ROLE: ClassVar[str] = "judge"

    judge_epochs: int = 0
    # applies to the spiking DVSGestureSNN judge only (Table I: 64)
    judge_width: int = 0

    def __post_init__(self) -> None:
        if self.judge_epochs < 0 or self.judge_width < 0:
            raise ValueError(
                "judge_epochs and judge_width must be >= 0 (0: the judge's default), got "
                f"{self.judge_epochs}, {self.judge_width}"
            )
