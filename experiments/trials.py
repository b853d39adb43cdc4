"""What the offline experiments share: the worker pool their trials run in (driven by
``experiments.cells``) and one trial's attack and scoring through ``fl_sim.evaluation.leakage``
(a failed capture is a row with a failure status, not a lost trial)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from attacks.types import Attack, Capture
from fl_sim.data.loaders.base import time_major
from fl_sim.evaluation.attack_work import Execution
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import Judge, ensure_judge
from fl_sim.evaluation.leakage import Outcome, Target, attack_and_score
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split, public_info
from fl_sim.federation.training import loss_gradient
from fl_sim.federation.transforms import TransformContext, update_chain
from fl_sim.ops.ray_tasks import RayPool, RaySettings, ray_pool
from models.public import PublicInfo, model_for

Rows = list[dict[str, object]]


def add_common_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="trials at once on a local Ray (ray_address set: the cluster decides)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment in --out: run only the cells not stored there yet",
    )


@contextlib.contextmanager
def worker_pool(workers: int, ray: RaySettings | None = None) -> Iterator[RayPool]:
    """Trials as Ray tasks (:mod:`fl_sim.ops.ray_tasks`): on a local Ray with room for
    ``workers`` of them at once, or on the cluster ``ray`` names (then Ray decides how many
    run at once). Leaving it by an exception (Ctrl-C, SIGTERM, an error) cancels the queued
    and running trials at once; workers hold nothing worth saving, the parent commits every
    finished one."""
    with ray_pool(ray or RaySettings(), workers) as pool:
        yield pool


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
    attacks = cfg.attack.build_attacks() if attacks is None else attacks
    # a trial is a Ray task already: its attacks run in it, on the config's device
    execution = Execution(cfg.runtime.device)
    return attack_and_score(
        targets,
        attacks,
        judge,
        batched=cfg.attack.batched,
        log=print,
        progress=False,
        suffix=suffix,
        execution=execution,
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
    initialised from seed ``seed * 100_003 + index`` (so every arm of one trial starts from the
    same weights), and its public info for a batch of 1 (as experiments.untrained_leakage)."""
    public = dataclasses.replace(public_info(cfg.federation, cfg.data, arm), batch_size=1)
    torch.manual_seed(cfg.federation.seed * 100_003 + index)
    return model_for(public), public


def fresh_capture(cfg: RunConfig, arm: str, index: int, truth: GroundTruth) -> Capture:
    """The FedSGD gradient of ``truth`` (batch 1) on :func:`fresh_victim`, as the server
    captures it (round 0, client ``index``): after the config's update transforms (defences;
    the public ones are in the capture's public info, as in a run)."""
    victim, public = fresh_victim(cfg, arm, index)
    update = loss_gradient(victim, time_major(truth.images), truth.labels)
    chain = update_chain(cfg.federation.transforms).for_partition(index)
    if chain:
        ctx = TransformContext(
            index, max(cfg.federation.clients, index + 1), 0, cfg.federation.seed, "gradient"
        )
        update = chain(update, ctx)
    return Capture(0, index, update, victim.state_dict(), public)


def attack_trial(
    cfg: RunConfig, index: int, keep_images: bool = False
) -> tuple[Rows, dict[str, np.ndarray] | None]:
    """Experiment 1's trial: every (arm, attack) of ``cfg`` on training sample ``index``, each
    arm on :func:`fresh_victim`. Returns the leakage rows and, with ``keep_images``, the
    images by name (``truth``, ``<arm>/<attack>``) for grids."""
    torch.set_num_threads(1)
    data = dataset_split(cfg.data, "train")
    truth = GroundTruth(data.take(slice(index, index + 1)), data.labels[index : index + 1])
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
    rows: Rows = []
    images = {"truth": truth.images.numpy()} if keep_images else None
    for arm in cfg.federated_arms:
        capture = fresh_capture(cfg, arm, index, truth)
        for outcome in trial_outcomes([Target(arm, capture, truth)], cfg, judge):
            rows += outcome.rows
            if images is not None and outcome.images is not None:
                images[f"{arm}/{outcome.attack}"] = outcome.images
    return rows, images
