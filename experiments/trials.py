"""Shared driver of the offline experiments: independent trials in worker processes,
their leakage rows appended to ``OUT/leakage.csv`` as each finishes."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fl_sim.results.report import append_rows, read_rows

Rows = list[dict[str, object]]


def add_common_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--workers", type=int, default=2, help="processes (1 torch thread each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")


def leakage_csv(parser: argparse.ArgumentParser, out: Path) -> Path:
    """``OUT/leakage.csv``, refusing to mix with an earlier run's rows."""
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "leakage.csv"
    if csv.exists():
        parser.error(f"{csv} exists; choose another --out")
    return csv


def run_trials(
    fn: Callable[..., Rows], jobs: Sequence[tuple[Any, ...]], csv: Path, workers: int, unit: str
) -> Rows:
    """``fn(*job)`` for every job in ``workers`` processes; rows appended in job order with a
    progress line each; returns every row written."""
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for done, future in enumerate(futures, 1):
            append_rows(csv, future.result())
            print(f"{done}/{len(futures)} {unit} ({time.perf_counter() - start:.0f}s)", flush=True)
    return read_rows(csv)
