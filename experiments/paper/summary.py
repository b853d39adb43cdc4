"""Our side of a reproduced table: statistics with 95% intervals, the published value beside
them, and whether the published value lies outside our interval."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.paper.published import Published
from fl_sim.results.report import cell_number
from fl_sim.results.stats import METRIC_BOUNDS, t_interval, wilson_interval

Row = Mapping[str, object]


@dataclass(frozen=True)
class Estimate:
    """A statistic of n trials and its 95% interval (nan where undefined)."""

    mean: float
    lo: float
    hi: float
    n: int
    note: str = ""  # e.g. how many infinite PSNRs were left out

    def text(self, spec: str) -> str:
        if math.isnan(self.mean):
            return "-"
        if math.isnan(self.lo):
            return format(self.mean, spec)
        return f"{self.mean:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"

    def excludes(self, value: float) -> bool:
        """Is ``value`` outside the interval (False when there is no interval)?"""
        if math.isnan(self.lo) or math.isnan(self.hi):
            return False
        return not self.lo <= value <= self.hi


def asr(rows: Sequence[Row]) -> Estimate:
    """Judge ASR in percent with its Wilson interval (failed attacks count as not leaked)."""
    n = len(rows)
    hits = sum(cell_number(r["judge_correct"]) == 1 for r in rows)
    lo, hi = wilson_interval(hits, n)
    return Estimate(100.0 * hits / n if n else math.nan, 100.0 * lo, 100.0 * hi, n)


def mean_of(rows: Sequence[Row], column: str) -> Estimate:
    """Mean of a per-sample metric with its t interval, over its finite values (an exact
    reconstruction's PSNR is infinite: those are counted in the note)."""
    values = [cell_number(r[column]) for r in rows]
    infinite = sum(math.isinf(v) for v in values)
    finite = [v for v in values if math.isfinite(v)]
    mean, lo, hi = t_interval(finite, bounds=METRIC_BOUNDS.get(column, (-math.inf, math.inf)))
    note = f"{infinite} of {len(values)} infinite, left out" if infinite else ""
    return Estimate(mean, lo, hi, len(finite), note)


def versus(ours: Estimate, paper: Published | None, spec: str) -> tuple[str, str, bool]:
    """Cells (ours, published) and whether the published value lies outside our interval."""
    if paper is None:
        return ours.text(spec), "-", False
    return ours.text(spec), format(paper.value, spec), ours.excludes(paper.value)


@dataclass
class ReproTable:
    """A reproduced table: formatted cells, a flag per row, notes and figure paths; written
    as Markdown, CSV and JSON (the JSON is what ``report.html`` shows)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def add(self, cells: Sequence[str], flagged: bool) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))
        self.flagged.append(flagged)

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(cells) + " |" for cells in self.rows]
        if not self.rows:
            lines.append("(no rows)")
        lines.append("")
        lines += [f"- {note}" for note in self.notes]
        lines += [f"![{Path(fig).stem}]({fig})" for fig in self.figures]
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> list[Path]:
        """``<name>.md``, ``<name>.csv`` and ``<name>.reproduction.json`` in ``out``."""
        import csv

        md, csv_path, js = (
            out / f"{self.name}{ext}" for ext in (".md", ".csv", ".reproduction.json")
        )
        md.write_text(self.markdown())
        with csv_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*self.columns, "published outside our 95% CI"])
            for cells, flag in zip(self.rows, self.flagged, strict=True):
                writer.writerow([*cells, int(flag)])
        js.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return [md, csv_path, js]
