"""Client sampling, the attack budget, Ray resources and clients that time out."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from inproc_grid import InProcessGrid

from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.eavesdropper import attack_selection
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import initial_model, run_federation
from fl_sim.federation.task import private_batch
from fl_sim.federation.training import loss_gradient, sgd_step
from fl_sim.ops.launcher import federation_config
from fl_sim.results.report import read_rows


def federate(cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    return run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)


def clients_by_arm_round(out: str) -> dict[tuple[str, int], set[int]]:
    seen: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in read_rows(Path(out) / "leakage.csv"):
        seen[(r["arm"], r["round"])].add(r["client"])
    return seen


def test_fraction_samples_the_same_clients_in_both_arms(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(clients=4, rounds=3, fraction=0.5, attacks=("idlg",), iterations=1,
        grids=False,
    )  # fmt: skip
    federate(cfg)
    seen = clients_by_arm_round(cfg.results.out)
    for r in range(1, 4):
        assert len(seen[("ann", r)]) == 2  # int(4 * 0.5) of 4 clients each round
        assert seen[("ann", r)] == seen[("snn", r)]  # seeded per round, same nodes per arm
    assert len({frozenset(seen[("ann", r)]) for r in range(1, 4)}) > 1  # resampled per round


def test_attack_budget_attacks_a_seeded_subset(small_cfg: RunConfig) -> None:
    """Drawn with the attack seed, not the run seed (whose draw here differs)."""
    cfg = small_cfg.replace(clients=4, rounds=2, attack_budget=2, attacks=("idlg",), iterations=1,
        grids=False, seed=5, attack_seed=2,
    )  # fmt: skip
    federate(cfg)
    seen = clients_by_arm_round(cfg.results.out)
    for r in (1, 2):
        assert seen[("ann", r)] == seen[("snn", r)] == set(attack_selection([0, 1, 2, 3], 2, 2, r))
        assert set(attack_selection([0, 1, 2, 3], 2, 5, r)) != seen[("ann", r)]
    assert attack_selection([3, 1, 2, 0], 2, 0, 1) == attack_selection([0, 1, 2, 3], 2, 0, 1)
    assert attack_selection([0, 1], 5, 0, 1) == [0, 1]


def test_a_client_that_times_out_is_left_out_and_recorded(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(clients=3, rounds=1, arms=("ann",), attacks=("idlg",), iterations=2,
        faults=("timeout@1",), round_timeout=6.0, grids=False,
    )  # fmt: skip
    finals = federate(cfg)
    with open(Path(cfg.results.out) / "faults.csv") as fh:
        faults = list(csv.DictReader(fh))
    assert len(faults) == 1 and "no reply before the round timeout" in faults[0]["reason"]
    assert [r["client"] for r in read_rows(Path(cfg.results.out) / "leakage.csv")] == [0, 2]
    start = initial_model(cfg.federation, cfg.data, "ann")
    grads = [
        loss_gradient(start, *private_batch(cfg.federation, cfg.data, pid, 3, 1)) for pid in (0, 2)
    ]
    mean = {k: (grads[0][k] + grads[1][k]) / 2 for k in grads[0]}
    for k, v in sgd_step(start.state_dict(), mean, cfg.federation.lr).items():
        torch.testing.assert_close(finals["ann"][k], v, rtol=0, atol=1e-7)


def test_ray_resources_per_client_reach_the_simulation_engine() -> None:
    fed = federation_config(RunConfig.of(clients=100, client_cpus=2, client_gpus=0.1).flower_run())
    assert "num-supernodes=100" in fed
    assert "client-resources-num-cpus=2 " in fed and "client-resources-num-gpus=0.1" in fed
    with pytest.raises(ValueError, match="client_cpus: cannot read '0.5' as int"):
        RunConfig.load(overrides=["client_cpus=0.5"])
