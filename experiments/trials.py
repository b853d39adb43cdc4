"""Shared driver of the offline experiments: independent trials in worker processes, each
attacking and scoring through ``fl_sim.evaluation.leakage`` (a failed capture is a row with a
failure status, not a lost trial), their rows appended to ``OUT/leakage.csv`` as each
finishes."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from attacks.types import Attack
from fl_sim.config import RunConfig
from fl_sim.evaluation.judge import Judge
from fl_sim.evaluation.leakage import Target, attack_and_score
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


def trial_rows(
    targets: list[Target],
    cfg: RunConfig,
    judge: Judge,
    attacks: Sequence[Attack] | None = None,
    suffix: str = "",
) -> Rows:
    """Leakage rows of ``attacks`` (default: the config's) on ``targets``: failures become
    rows with a failure status and a line on stdout; no per-capture progress lines."""
    attacks = cfg.build_attacks() if attacks is None else attacks
    outcomes = attack_and_score(
        targets, attacks, judge, batched=cfg.batched, log=print, progress=False, suffix=suffix
    )
    return [row for outcome in outcomes for row in outcome.rows]
