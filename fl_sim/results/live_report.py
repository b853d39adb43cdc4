"""Keeping a running run's ``report.html`` current without slowing the run: rewritten after
committed rounds at most ~10% of the time, and never raising into the federation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fl_sim.results.html_report import REPORT_HTML, write_html_report

__all__ = ["RATE", "LiveReport"]

RATE = 10.0  # a rewrite waits at least RATE x the last render's time after the last write


class LiveReport:
    """Rewrites ``<out>/report.html``; ``update()`` skips a rewrite that would come sooner than
    ``RATE`` render times after the last one, ``update(force=True)`` always writes."""

    def __init__(
        self,
        out_dir: Path,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out_dir, self.log, self.clock = Path(out_dir), log, clock
        self.last_write: float | None = None  # clock() when the last render ended
        self.cost = 0.0  # seconds the last render took
        self.writes = 0

    def due(self) -> bool:
        """Whether enough time has passed since the last write."""
        return self.last_write is None or self.clock() - self.last_write >= RATE * self.cost

    def update(self, force: bool = False) -> bool:
        """Write the page if due (or forced); a failure is logged in one line, never raised."""
        if not force and not self.due():
            return False
        start = self.clock()
        try:
            write_html_report([self.out_dir], self.out_dir / REPORT_HTML)
        except Exception as err:  # the report must never cost the run
            self.log(f"fl-sim: {REPORT_HTML} not written: {type(err).__name__}: {err}")
            return False
        finally:
            self.last_write = self.clock()
            self.cost = self.last_write - start
        self.writes += 1
        return True
