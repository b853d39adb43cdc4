"""``fl-sim reproduce NAME``: one of the paper's tables or figures, by the paper's protocol
(``experiments.paper.protocol``), on the datasets available, resumable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from experiments.paper import REPRODUCTIONS
from experiments.paper.protocol import (
    KIND_WORDS,
    PAPER_PROTOCOL,
    Context,
    Log,
    available,
    fmt_seconds,
)
from fl_sim.config import parse_overrides
from fl_sim.federation.run_config import RunConfig
from fl_sim.results.trial_store import TRIALS_DB, TrialStore

# keys the reproduction sets itself: per cell, or by its own options
RESERVED_KEYS = ("dataset", "attacks", "arms", "threshold", "tau", "out", "resume", "overwrite")


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse ``--set`` keys the reproduction sets itself (one line, exit 2)."""
    taken = sorted(set(parse_overrides(list(overrides))) & set(RESERVED_KEYS))
    if taken:
        raise ValueError(
            f"--set {', '.join(taken)}: set by the reproduction itself (use --datasets for "
            f"datasets); keys it reserves: {', '.join(RESERVED_KEYS)}"
        )


def reproduce(
    name: str,
    out: Path,
    datasets: Sequence[str] | None = None,
    samples: int = 100,
    workers: int = 2,
    resume: bool = False,
    overrides: Sequence[str] = (),
    log: Log = print,
) -> Path:
    """Run reproduction ``name`` into ``out``; returns the Markdown table's path."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; valid: {', '.join(REPRODUCTIONS)}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    check_overrides(overrides)
    repro = REPRODUCTIONS[name]()
    asked = tuple(datasets) if datasets else repro.datasets
    base = RunConfig.load(overrides=[*PAPER_PROTOCOL, *overrides])
    for dataset in asked:  # names and kinds before anything is loaded
        cfg = RunConfig.from_mapping({"dataset": dataset}, base)
        if cfg.data.kind not in repro.kinds:
            raise ValueError(
                f"{name} takes {' or '.join(KIND_WORDS[k] for k in repro.kinds)} datasets; "
                f"{dataset} is {KIND_WORDS[cfg.data.kind]} data"
            )
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    unavailable: dict[str, str] = {}
    for dataset in asked:
        why = available(RunConfig.from_mapping({"dataset": dataset}, base), repro.split)
        if why is not None:
            unavailable[dataset] = why
            log(f"{name}: {dataset} is not available here, left out: {why}")
    usable = tuple(d for d in asked if d not in unavailable)
    if not usable:
        raise FileNotFoundError(
            f"{name}: none of the datasets {', '.join(asked)} is available here"
        )
    out = Path(out)
    store: TrialStore | None = None
    if repro.trials:
        if (out / TRIALS_DB).exists() and not resume:
            raise FileExistsError(
                f"{out} already holds a reproduction ({TRIALS_DB}); pass --resume to continue "
                "it or choose another --out"
            )
        if resume and not (out / TRIALS_DB).exists():
            raise FileNotFoundError(f"{out} holds no {TRIALS_DB}: nothing to resume")
        store = TrialStore(out)
        try:
            store.claim({"protocol": list(PAPER_PROTOCOL), "overrides": list(overrides)})
        except ValueError:
            store.close()
            raise
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(name, out, tuple(overrides), usable, unavailable, samples, workers, store, log)
    start = time.perf_counter()
    try:
        table = repro.run(ctx)
    finally:
        if store is not None:
            store.close()
    workers_note = f" with {workers} worker processes" if repro.trials else ""
    table.notes.append(
        f"Wall time of this invocation: {fmt_seconds(time.perf_counter() - start)}{workers_note}."
    )
    if ctx.failed:
        table.notes.append(
            f"{len(ctx.failed)} trials failed and are not in the table (rerun with --resume): "
            + "; ".join(ctx.failed[:5])
        )
    paths = table.write(out)
    write_report(out, log)
    log(table.markdown())
    for flag, cells in zip(table.flagged, table.rows, strict=True):
        if flag:
            log(f"{name}: published value outside our 95% CI: {' / '.join(cells[:3])}")
    log(f"{name}: wrote {', '.join(str(p) for p in paths)}")
    return paths[0]


def write_report(out: Path, log: Log) -> None:
    """``OUT/report.html`` with the tables (never fails the reproduction)."""
    try:
        from fl_sim.results.html_report import write_html_report
    except ImportError:
        return
    try:
        write_html_report([out], out / "report.html")
    except Exception as err:  # the tables are written; the page is a view of them
        log(f"report.html not written: {type(err).__name__}: {err}")
