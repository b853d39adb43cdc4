"""Flower's SecAgg+ in the federation: what the eavesdropper captures is masked, the
aggregate is the plain one up to SecAgg+'s quantisation, dropouts are recovered."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, Message
from inproc_grid import InProcessGrid
from tests_helpers import captures_and_truth, tapped_fedsgd

from fl_sim.cli import main
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.secagg import SecAggPlusGrid, SecAggSpec
from fl_sim.federation.server_app import initial_model, run_federation
from fl_sim.federation.task import public_info, replay_audit
from fl_sim.results.store import ResultsStore

# SecAgg+'s quantisation step with Flower's defaults (clip 8, 2**22 levels): each client's
# stochastic rounding moves each entry by less than one step, so the mean by less too
STEP = 2 * 8.0 / 2**22


def federate(cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    return run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)


def max_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("faults", [(), ("error@3",)], ids=["all", "one-drops-out"])
def test_aggregate_equals_plain_one_within_quantisation(
    small_cfg: RunConfig, tmp_path, faults: tuple[str, ...]
) -> None:
    """The same federation with and without SecAgg+: the final models differ by at most
    rounds x lr x one quantisation step; a client failing in the masked-vector stage is left
    out (recorded as a fault) and SecAgg+ removes its masks from the others' sum."""
    cfg = small_cfg.replace(clients=4, arms=("ann",), attacks=(), faults=faults, seed=3)
    plain = federate(cfg.replace(out=str(tmp_path / "plain")))["ann"]
    secure = federate(cfg.replace(secagg="secaggplus"))["ann"]
    start = initial_model(cfg.federation, cfg.data, "ann").state_dict()
    assert max_gap(secure, start) > 1e3 * STEP  # it trained
    assert max_gap(secure, plain) <= cfg.federation.rounds * cfg.federation.lr * STEP
    assert all(secure[k].dtype == plain[k].dtype for k in plain)  # float32 stays float32
    store = ResultsStore(cfg.results.out)
    faulty = {(r["round"], r["client"]) for r in store.fault_rows()}
    assert faulty == ({(1, 3), (2, 3)} if faults else set())
    assert [r["replies"] for r in store.rounds() if r["round"]] == [4, 4]
    store.close()


def test_captures_are_masked_and_attacks_score_at_chance(small_cfg: RunConfig) -> None:
    """Every capture the tap gets under SecAgg+ is unrelated to the client's true gradient
    (correlation near 0; it is 1 without SecAgg+), and iDLG on them recovers nothing."""
    cfg = small_cfg.replace(clients=3, arms=("ann",), secagg="secaggplus")
    public = public_info(cfg.federation, cfg.data, "ann")
    audit = replay_audit(cfg.federation, cfg.data)
    correlations: list[float] = []

    def tap(server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        for capture, _, grad in captures_and_truth(audit, public, server_round, sent, replies):
            true = torch.cat([g.flatten() for g in grad.values()])
            seen = torch.cat([capture.update[k].flatten() for k in grad])
            correlations.append(float(torch.corrcoef(torch.stack([true, seen]))[0, 1]))

    tapped_fedsgd(cfg, tap, "ann", 2, wrap=lambda grid: SecAggPlusGrid(grid, SecAggSpec(), 1))
    assert len(correlations) == 2 * 3
    # independent of the gradient: |r| ~ 1/sqrt(#parameters) ~ 0.01; the plain capture: r = 1
    assert max(abs(c) for c in correlations) < 0.1, correlations

    out = cfg.replace(attacks=("idlg",), rounds=1, iterations=50)
    federate(out)
    store = ResultsStore(out.results.out)
    rows = store.reconstruction_rows()
    store.close()
    assert len(rows) == 3
    assert max(float(r["ssim"]) for r in rows) < 0.2  # untrained ANN, plain iDLG: ~0.97


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clients": 2}, "at least 3 clients per round.*got 2"),
        ({"clients": 6, "fraction": 0.4}, "at least 3 clients per round.*got 2"),
        ({"strategy": "krum"}, "strategy 'krum' needs each client's update"),
        ({"secagg": "secaggplus:shares=3:threshold=3"}, "must be less than `num_shares`"),
        ({"secagg": "secaggplus:shares=9"}, "shares=9 exceeds the 4 sampled clients"),
        ({"secagg": "secaggplus:clip=0"}, "clip must be > 0"),
        ({"secagg": "secaggplus:bits=3"}, "not KEY=VALUE with KEY in shares, threshold, clip"),
        ({"secagg": "secagg"}, "unknown 'secagg'; valid: none, secaggplus"),
    ],
)
def test_bad_secagg_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig.from_mapping({"clients": 4, "secagg": "secaggplus", **overrides})


def test_cli_bad_secagg_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["run", "--set", "secagg=secaggplus", "--set", "clients=2", "--out", "/tmp/x"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "secagg" in lines[0] and "Traceback" not in lines[0]
