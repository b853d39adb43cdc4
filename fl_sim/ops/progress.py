"""Progress of long work: "done/total, elapsed, ETA" lines, and bars on a terminal.

Work that runs in the CLI process (judge training, dataset emulation) uses ``steps``: a tqdm
bar on a terminal, plain lines at every tenth of the work otherwise (files and pipes get no
ANSI codes and no carriage returns). The ServerApp runs in a subprocess whose output
``fl_sim.ops.console`` relays, so it only prints ``Eta`` lines; the console turns those into
bars on a terminal (``PROGRESS`` parses them).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# "[ann r3] attacks 4/12 ..." or "[ann] rounds 3/10 ...": what the console draws as bars.
PROGRESS = re.compile(r"^\[(?P<who>[^\]]+)\] (?P<kind>rounds|attacks) (?P<n>\d+)/(?P<total>\d+)")


def fmt_duration(seconds: float) -> str:
    """Short human duration: 8.6s, 1m06s, 2h03m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Eta:
    """Counts finished units of ``total`` since it was made and says how long the rest takes
    at the rate so far (unknown until the first unit is done)."""

    def __init__(self, total: int, done: int = 0, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.clock = total, done, clock
        self.start_done, self.start = done, clock()

    def advance(self, units: int = 1, unit: str = "") -> str:
        """Count ``units`` more as done; returns ``"k/n, 12.0s elapsed, ETA 30.0s"`` (with
        ``unit``: ``"k/n digits, ..."``)."""
        self.done = min(self.total, self.done + units)
        return self.status(unit)

    def status(self, unit: str = "") -> str:
        elapsed = self.clock() - self.start
        finished = self.done - self.start_done
        if self.done >= self.total:
            eta = "done"
        elif finished <= 0:
            eta = "ETA unknown"
        else:
            eta = "ETA " + fmt_duration(elapsed / finished * (self.total - self.done))
        count = f"{self.done}/{self.total}" + (f" {unit}" if unit else "")
        return f"{count}, {fmt_duration(elapsed)} elapsed, {eta}"


def is_terminal(stream: object = None) -> bool:
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def steps(
    items: Iterable[T],
    desc: str,
    total: int,
    unit: str = "it",
    log: Callable[[str], None] = print,
    terminal: bool | None = None,
    min_interval: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Iterate ``items`` with progress: a tqdm bar on a terminal, else a plain
    ``desc: k/n unit, elapsed, ETA`` line at a tenth of ``total`` (or the end) once at least
    ``min_interval`` seconds have passed since the start or the last line."""
    if is_terminal() if terminal is None else terminal:
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False)
        return
    eta = Eta(total, clock=clock)
    marks = {max(1, round(total * k / 10)) for k in range(1, 11)}
    last = eta.start
    for i, item in enumerate(items, start=1):
        yield item
        if i in marks and clock() - last >= min_interval:
            log(f"{desc}: {eta.advance(i - eta.done, unit)}")
            last = clock()
