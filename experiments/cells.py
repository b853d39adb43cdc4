"""Long experiments are runs too: each job (a cell of the experiment's grid and one trial of it,
e.g. a victim and a digit) runs as a Ray task, and its rows are committed to the out dir's
trial store (``fl_sim.results.trial_store``) in one transaction as it finishes, its images
beside them; a line per finished job says cells done / total, elapsed and the estimate. A
re-run on the same out dir with ``--resume`` runs only the jobs still missing, so a kill
loses at most the jobs in flight, and a store written with other settings is refused.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl_sim.atomic_file import atomic_write
from fl_sim.federation.run_config import RunConfig
from fl_sim.ops.progress import Eta
from fl_sim.ops.ray_tasks import RaySettings
from fl_sim.results.trial_store import TrialStore

EXPERIMENT_DB = "trials.sqlite"
IMAGES = "images"

Rows = list[dict[str, object]]
Images = Mapping[str, np.ndarray]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """Trial ``trial`` of cell ``cell``: ``fn(*args)`` returns its rows and, for a job whose
    pictures are kept, its images by name (else None)."""

    cell: str
    trial: int
    args: tuple[Any, ...]


def open_store(
    out: Path, resume: bool, identity: Mapping[str, object], name: str = EXPERIMENT_DB
) -> TrialStore:
    """The out dir's trial store: a new one (refused where one exists, unless ``resume``) or
    the one to resume (refused when missing, or written with another ``identity``)."""
    path = Path(out) / name
    if path.exists() and not resume:
        raise FileExistsError(
            f"{out} already holds an experiment ({name}); pass --resume to continue it or "
            "choose another --out"
        )
    if resume and not path.exists():
        raise FileNotFoundError(f"{out} holds no {name}: nothing to resume")
    store = TrialStore(out, name)
    try:
        store.claim(dict(identity))
    except ValueError:
        store.close()
        raise
    return store


# run config keys that say where and how fast an experiment runs, not what it measures
PLACEMENT_KEYS = (
    "out", "resume", "overwrite", "ray_address", "attack_cpus", "attack_gpus", "client_cpus",
    "client_gpus", "threads", "device", "round_timeout",
)  # fmt: skip


def identity_of(experiment: str, cfg: RunConfig, **options: object) -> dict[str, object]:
    """What an experiment's rows depend on: its name, its own ``options`` (e.g. samples) and
    the run config but where and how fast it runs, so a resume on another machine or with
    other workers pools, and one with other settings is refused."""
    settings = {k: v for k, v in cfg.to_flower().items() if k not in PLACEMENT_KEYS}
    return {"experiment": experiment, **options, **settings}


def image_path(out: Path, cell: str, trial: int) -> Path:
    return Path(out) / IMAGES / slug(cell) / f"{trial}.npz"


def save_images(out: Path, cell: str, trial: int, images: Images) -> None:
    """A job's images (names with ``/`` kept as ``__``), atomically."""
    path = image_path(out, cell, trial)
    with atomic_write(path) as fh:
        np.savez_compressed(fh, **{k.replace("/", "__"): v for k, v in images.items()})


def load_images(out: Path, cell: str, trial: int) -> dict[str, np.ndarray] | None:
    """The images :func:`save_images` kept for a job, None if there are none."""
    path = image_path(out, cell, trial)
    if not path.is_file():
        return None
    with np.load(path) as found:
        return {k.replace("__", "/"): found[k] for k in found.files}


def slug(text: str) -> str:
    """``text`` as a file name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - began


def run_cells(
    store: TrialStore,
    fn: Callable[..., Rows | tuple[Rows, Images | None]],
    jobs: Sequence[Job],
    workers: int,
    ray: RaySettings | None = None,
    label: str = "experiment",
    log: Log = print,
    announce: bool = True,
) -> list[str]:
    """Every job of ``jobs`` not in ``store`` yet (``fn(*job.args)``: its rows, or its rows
    and images), as Ray tasks, committed as each finishes
    (rows in the store, images under ``<store dir>/images``); returns the failures, one line
    each: a broken job costs itself, not the experiment (a re-run with --resume retries it).
    ``announce``: first a line with how many are stored and how many run."""
    from experiments.trials import worker_pool

    stored = {cell: store.finished(cell) for cell in {job.cell for job in jobs}}
    todo = [job for job in jobs if job.trial not in stored[job.cell]]
    if announce:
        log(
            f"{label}: {len(jobs)} cells, {len(jobs) - len(todo)} stored, {len(todo)} to run with "
            f"{workers} worker(s)"
        )
    failures: list[str] = []
    if not todo:
        return failures
    eta = Eta(len(jobs), done=len(jobs) - len(todo))
    with worker_pool(workers, ray) as pool:
        futures = {pool.submit(_timed, fn, *job.args): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result, seconds = future.result()
            except Exception as err:  # reported, counted, retried on resume
                failures.append(f"{job.cell} #{job.trial}: {type(err).__name__}: {err}")
                status = eta.advance(1, "cells")
                log(f"{label}: {status} ({job.cell} #{job.trial} failed: {failures[-1]})")
                continue
            rows, images = (result, None) if isinstance(result, list) else result
            if images is not None:
                save_images(store.out_dir, job.cell, job.trial, images)
            store.add_trial(job.cell, job.trial, rows, seconds)
            log(f"{label}: {eta.advance(1, 'cells')} ({job.cell} #{job.trial}, {seconds:.1f}s)")
    return failures


def stored_rows(store: TrialStore, jobs: Sequence[Job]) -> Rows:
    """The stored rows of ``jobs``, cell by cell in first-appearance order, trial order."""
    trials: dict[str, list[int]] = {}
    for job in jobs:
        trials.setdefault(job.cell, []).append(job.trial)
    return [row for cell, wanted in trials.items() for row in store.rows(cell, wanted)]


def run_experiment(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    identity: Mapping[str, object],
    fn: Callable[..., Rows | tuple[Rows, Images | None]],
    jobs: Sequence[Job],
    ray: RaySettings | None = None,
) -> tuple[Rows, list[str]]:
    """An experiment's jobs in ``args.out`` (``--resume``: the missing ones), then every
    stored row exported to ``OUT/leakage.csv``; returns the rows and the failed jobs. A store
    that cannot be used (exists without --resume, missing, other settings) is a one-line
    parser error."""
    from fl_sim.results.report import write_rows

    label = str(identity["experiment"])
    try:
        store = open_store(args.out, args.resume, identity)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    with store:
        failures = run_cells(store, fn, jobs, args.workers, ray, label)
        rows = stored_rows(store, jobs)
    write_rows(Path(args.out) / "leakage.csv", rows)
    if failures:
        print(
            f"{label}: {len(failures)} cells failed and are left out (rerun with --resume): "
            + "; ".join(failures[:3]),
            flush=True,
        )
    return rows, failures
