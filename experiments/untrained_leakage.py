"""Paper Experiment 1 (Table IV, MNIST rows): attacks on freshly initialised victims.

Following DLG/iDLG and Aksu et al. (Sec. V-A), each sample is attacked on its own randomly
initialised LeNet / SNN-LeNet (batch size 1), outside any federation. Each finished sample is
committed to ``OUT/trials.sqlite`` (``--resume`` continues there); the rows are exported to
``OUT/leakage.csv`` (same columns as ``fl-sim run``; ``client`` is the sample's index) and a
summary table is printed.

    python -m experiments.untrained_leakage --samples 100 --out results/untrained
"""

from __future__ import annotations

import time

import numpy as np

from experiments.cells import Job, identity_of, run_experiment
from experiments.parsing import OneLineErrorParser
from experiments.trials import add_common_args, attack_trial
from fl_sim.evaluation.judge import ensure_judge
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split
from fl_sim.ops.ray_tasks import RaySettings
from fl_sim.results.report import summary_table, write_report


def attack_sample(cfg: RunConfig, index: int) -> list[dict[str, object]]:
    """Every (arm, attack) on one training sample, each arm on a fresh victim seeded by index."""
    return attack_trial(cfg, index)[0]


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.untrained_leakage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=int, default=100)
    add_common_args(parser, "results/untrained")
    args = parser.parse_args(argv)
    cfg = RunConfig.load(overrides=args.overrides)
    data = dataset_split(cfg.data, "train")
    if not 1 <= args.samples <= len(data):
        parser.error(f"--samples must be in 1..{len(data)}, got {args.samples}")
    indices = np.random.default_rng(cfg.federation.seed).choice(
        len(data), args.samples, replace=False
    )
    identity = identity_of("untrained_leakage", cfg, samples=args.samples)
    ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    start = time.perf_counter()
    jobs = [Job("samples", int(i), (cfg, int(i))) for i in indices]
    rows, _ = run_experiment(
        parser, args, identity, attack_sample, jobs, RaySettings.of(cfg.runtime)
    )
    write_report(args.out, rows)
    print(
        f"{args.samples} samples, victim {cfg.federation.victim}, T={cfg.time_steps}, "
        f"{cfg.attack.iterations} L-BFGS steps (dlg/idlg), {cfg.attack.grnn_iterations} GRNN "
        "iterations, "
        f"{time.perf_counter() - start:.0f}s with {args.workers} workers"
    )
    print(summary_table(rows))


if __name__ == "__main__":
    main()
