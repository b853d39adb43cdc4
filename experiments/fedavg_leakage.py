"""Attacks on FedAvg updates: unrolling the client's local steps vs reading the update as
one gradient.

Each trial draws ``local_steps x batch_size`` real training digits, runs the FedAvg client
(``local_epochs`` passes of SGD at ``lr`` over ``local_steps`` mini-batches) on a freshly
initialised victim, and attacks its new weights twice with the same attack and budget:

* ``<attack>``: the eavesdropper's default, which simulates the client's known local steps
  on the dummy data (Geiping et al. 2020; breaching's multi-step user);
* ``<attack>-as-gradient``: the naive reading that takes (w0 - w_K) / lr for the gradient
  of one batch of all the samples (what an attacker ignoring the protocol would do).

Rows go to ``OUT/leakage.csv`` (``client`` is the trial index) and a summary is printed.

    python -m experiments.fedavg_leakage --trials 10 --out results/fedavg \\
        --set local_steps=2 --set attacks=dlg --set iterations=300
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from attacks import Capture
from attacks.local_update import observed_update
from experiments.cells import Job, identity_of, run_experiment
from experiments.parsing import OneLineErrorParser
from experiments.trials import add_common_args, trial_rows
from fl_sim.data.loaders.base import time_major
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import ensure_judge
from fl_sim.evaluation.leakage import Target
from fl_sim.federation.client_app import client_update
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split, public_info
from fl_sim.ops.ray_tasks import RaySettings
from fl_sim.results.report import summary_table
from models.public import model_for


def attack_trial(cfg: RunConfig, trial: int, indices: np.ndarray) -> list[dict[str, object]]:
    """Both readings of one FedAvg update, for every arm and attack."""
    torch.set_num_threads(1)
    data = dataset_split(cfg.data, "train")
    index = torch.as_tensor(indices, dtype=torch.long)
    truth = GroundTruth(data.take(index), data.labels[index])
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
    rows: list[dict[str, object]] = []
    for arm in cfg.federated_arms:
        public = public_info(cfg.federation, cfg.data, arm)
        torch.manual_seed(cfg.federation.seed * 100_003 + trial)
        victim = model_for(public)
        start = {k: v.clone() for k, v in victim.state_dict().items()}
        sent = client_update(cfg.federation, victim, time_major(truth.images), truth.labels)
        capture = Capture(1, trial, sent, start, public)
        naive_public = dataclasses.replace(public, update="gradient", batch_size=public.samples)
        naive = Capture(1, trial, observed_update(capture), start, naive_public)
        for attack in cfg.attack.build_attacks():
            rows += trial_rows([Target(arm, capture, truth)], cfg, judge, [attack])
            rows += trial_rows([Target(arm, naive, truth)], cfg, judge, [attack], "-as-gradient")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.fedavg_leakage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--trials", type=int, default=10)
    add_common_args(parser, "results/fedavg")
    args = parser.parse_args(argv)
    cfg = RunConfig.load(overrides=["protocol=fedavg", "attacks=dlg", *args.overrides])
    if cfg.federation.protocol != "fedavg":
        parser.error("this experiment attacks FedAvg updates: leave protocol=fedavg")
    data = dataset_split(cfg.data, "train")
    rng = np.random.default_rng(cfg.federation.seed)
    draws = [
        rng.choice(len(data), cfg.federation.samples_per_round, replace=False)
        for _ in range(args.trials)
    ]
    identity = identity_of("fedavg_leakage", cfg, trials=args.trials)
    ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    start = time.perf_counter()
    jobs = [Job("trials", t, (cfg, t, d)) for t, d in enumerate(draws)]
    rows, _ = run_experiment(
        parser, args, identity, attack_trial, jobs, RaySettings.of(cfg.runtime)
    )
    fed = cfg.federation
    print(
        f"{args.trials} FedAvg updates: {fed.local_epochs} epoch(s) x {fed.local_steps} step(s) "
        f"x batch {fed.batch_size}, lr {fed.lr}; {cfg.attack.iterations} L-BFGS steps; "
        f"{time.perf_counter() - start:.0f}s with {args.workers} workers"
    )
    print(summary_table(rows))


if __name__ == "__main__":
    main()
