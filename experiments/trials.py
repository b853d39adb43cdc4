"""Shared driver of the offline experiments: independent trials in worker processes, each
attacking and scoring through ``fl_sim.evaluation.leakage`` (a failed capture is a row with a
failure status, not a lost trial), their rows appended to ``OUT/leakage.csv`` as each
finishes."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.types import Attack, Capture
from fl_sim.config import RunConfig
from fl_sim.data.loaders.base import time_major
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import Judge, ensure_judge
from fl_sim.evaluation.leakage import Outcome, Target, attack_and_score
from fl_sim.federation.task import dataset_split, public_info
from fl_sim.federation.training import loss_gradient
from fl_sim.federation.transforms import TransformContext, update_chain
from fl_sim.results.report import append_rows, read_rows
from models.public import PublicInfo, model_for

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


def worker_setup() -> None:
    """Pool initializer: the kernel SIGKILLs this worker when the process that started it
    dies, however (a SIGKILLed experiment must not leave workers attacking on), and Ctrl-C
    is the parent's to handle (it reaches the whole process group); SIGTERM ends it."""
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited by fork


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process (:func:`worker_setup`). Leaving it
    by an exception (Ctrl-C, SIGTERM, an error) cancels the queued jobs and ends the workers
    at once, where the executor's own exit would first run every queued job."""
    pool = ProcessPoolExecutor(workers, initializer=worker_setup)
    try:
        yield pool
    except BaseException:
        # the executor has no public way to stop running jobs; its worker table is stable.
        # Workers hold nothing worth saving: the parent commits every finished job.
        for process in list((pool._processes or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_trials(
    fn: Callable[..., Rows], jobs: Sequence[tuple[Any, ...]], csv: Path, workers: int, unit: str
) -> Rows:
    """``fn(*job)`` for every job in ``workers`` processes; rows appended in job order with a
    progress line each; returns every row written."""
    start = time.perf_counter()
    with worker_pool(workers) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for done, future in enumerate(futures, 1):
            append_rows(csv, future.result())
            print(f"{done}/{len(futures)} {unit} ({time.perf_counter() - start:.0f}s)", flush=True)
    return read_rows(csv)


def ordered_results(
    fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int
) -> Iterator[Any]:
    """``fn(*job)`` for every job in ``workers`` processes, yielded in job order as each is
    available (run_trials' pool, for callers that handle results and progress themselves)."""
    with worker_pool(workers) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for future in futures:
            yield future.result()


def trial_outcomes(
    targets: list[Target],
    cfg: RunConfig,
    judge: Judge,
    attacks: Sequence[Attack] | None = None,
    suffix: str = "",
) -> list[Outcome]:
    """What ``attacks`` (default: the config's) did to ``targets`` (rows and matched images),
    through the one attack->score loop: failures become rows with a failure status and a
    line on stdout; no per-capture progress lines."""
    attacks = cfg.build_attacks() if attacks is None else attacks
    return attack_and_score(
        targets, attacks, judge, batched=cfg.batched, log=print, progress=False, suffix=suffix
    )


def trial_rows(
    targets: list[Target],
    cfg: RunConfig,
    judge: Judge,
    attacks: Sequence[Attack] | None = None,
    suffix: str = "",
) -> Rows:
    """Leakage rows of ``attacks`` (default: the config's) on ``targets``: failures become
    rows with a failure status and a line on stdout; no per-capture progress lines."""
    outcomes = trial_outcomes(targets, cfg, judge, attacks, suffix)
    return [row for outcome in outcomes for row in outcome.rows]


def fresh_victim(cfg: RunConfig, arm: str, index: int) -> tuple[torch.nn.Module, PublicInfo]:
    """Experiment 1's victim of trial ``index``: the ``arm`` of ``cfg``'s victim family, freshly
    initialised from seed ``cfg.seed * 100_003 + index`` (so every arm of one trial starts from
    the same weights), and its public info for a batch of 1 (as experiments.untrained_leakage)."""
    public = dataclasses.replace(public_info(cfg, arm), batch_size=1)
    torch.manual_seed(cfg.seed * 100_003 + index)
    return model_for(public), public


def fresh_capture(cfg: RunConfig, arm: str, index: int, truth: GroundTruth) -> Capture:
    """The FedSGD gradient of ``truth`` (batch 1) on :func:`fresh_victim`, as the server
    captures it (round 0, client ``index``): after the config's update transforms (defences;
    the public ones are in the capture's public info, as in a run)."""
    victim, public = fresh_victim(cfg, arm, index)
    update = loss_gradient(victim, time_major(truth.images), truth.labels)
    chain = update_chain(cfg.transforms).for_partition(index)
    if chain:
        ctx = TransformContext(index, max(cfg.clients, index + 1), 0, cfg.seed, "gradient")
        update = chain(update, ctx)
    return Capture(0, index, update, victim.state_dict(), public)


def attack_trial(
    cfg: RunConfig, index: int, keep_images: bool = False
) -> tuple[Rows, dict[str, np.ndarray] | None]:
    """Experiment 1's trial: every (arm, attack) of ``cfg`` on training sample ``index``, each
    arm on :func:`fresh_victim`. Returns the leakage rows and, with ``keep_images``, the
    images by name (``truth``, ``<arm>/<attack>``) for grids."""
    torch.set_num_threads(1)
    data = dataset_split(cfg, "train")
    truth = GroundTruth(data.take(slice(index, index + 1)), data.labels[index : index + 1])
    judge = ensure_judge(cfg, log=lambda _: None)
    rows: Rows = []
    images = {"truth": truth.images.numpy()} if keep_images else None
    for arm in cfg.federated_arms:
        capture = fresh_capture(cfg, arm, index, truth)
        for outcome in trial_outcomes([Target(arm, capture, truth)], cfg, judge):
            rows += outcome.rows
            if images is not None and outcome.images is not None:
                images[f"{arm}/{outcome.attack}"] = outcome.images
    return rows, images
