"""The federation with its eavesdropper, run in-process (transport replaced, apps unchanged)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Error, Message
from inproc_grid import InProcessGrid
from tests_helpers import captures_and_truth, tapped_fedsgd

from attacks import AttackConfig, Capture, Reconstruction
from attacks.idlg import IDLG
from fl_sim.evaluation.judge import ensure_judge
from fl_sim.evaluation.schedule import AttackSchedule
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.eavesdropper import Eavesdropper
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import init_record, initial_model, run_federation
from fl_sim.federation.task import private_batch, public_info, replay_audit
from fl_sim.federation.training import loss_gradient, sgd_step
from fl_sim.results.report import LEAKAGE_COLUMNS, read_rows
from fl_sim.results.store import ResultsStore
from models.public import model_for


def federate(cfg: RunConfig, fault=None) -> dict[str, dict[str, torch.Tensor]]:
    return run_federation(
        InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower(), fault), cfg
    )


def test_tap_is_passive_global_models_bit_identical(small_cfg: RunConfig, tmp_path) -> None:
    with_tap = federate(small_cfg.replace(attacks=("dlg", "idlg"), iterations=2))
    without = federate(small_cfg.replace(attacks=(), out=str(tmp_path / "off")))
    for arm in small_cfg.federated_arms:
        assert with_tap[arm].keys() == without[arm].keys()
        for key, value in with_tap[arm].items():
            assert torch.equal(value, without[arm][key]), (arm, key)
        start = initial_model(small_cfg.federation, small_cfg.data, arm).state_dict()
        assert any(not torch.equal(v, start[k]) for k, v in with_tap[arm].items())  # it trained


def test_captured_update_equals_gradient_of_audit_ground_truth(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(arms=("ann", "snn"))
    audit = replay_audit(cfg.federation, cfg.data)
    checked = []

    def tap(server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        for capture, meta, expected in captures_and_truth(
            audit, public, server_round, sent, replies
        ):
            assert capture.update.keys() == expected.keys()
            for k, v in expected.items():
                assert torch.allclose(capture.update[k], v, rtol=0, atol=1e-7), k
            checked.append((public.arch, server_round, meta.partition_id))

    for arm in cfg.federated_arms:
        public = public_info(cfg.federation, cfg.data, arm)
        tapped_fedsgd(cfg, tap, arm, rounds=2)
    assert len(checked) == 2 * 2 * 2


def test_leakage_rows_grids_plot_and_summary(small_cfg: RunConfig) -> None:
    small_cfg = small_cfg.replace(iterations=5)  # the rows, not the attack's skill
    federate(small_cfg)
    out = small_cfg.results.out
    rows = read_rows(Path(out) / "leakage.csv")
    assert len(rows) == 2 * small_cfg.federation.rounds * small_cfg.federation.clients * len(
        small_cfg.attack.attacks
    )  # arms x rounds x clients x attacks
    assert set(rows[0]) == set(LEAKAGE_COLUMNS)
    keys = {(r["arm"], r["round"], r["client"], r["attack"], r["sample"]) for r in rows}
    assert len(keys) == len(rows)  # no duplicates
    assert {r["arm"] for r in rows} == {"ann", "snn"} and {r["round"] for r in rows} == {1, 2}
    for r in rows:
        assert r["label_correct"] == (r["label_pred"] == r["label_true"])
        assert r["judge_correct"] == (r["judge_pred"] == r["label_true"])
        assert 0 <= r["mse"] <= 1 and -1 <= r["ssim"] <= 1
    idlg_ann = [r for r in rows if r["arm"] == "ann" and r["attack"] == "idlg"]
    assert all(r["label_correct"] for r in idlg_ann)
    files = {p.name for p in Path(out).iterdir()}
    assert {
        "leakage.csv",
        "summary.txt",
        "leakage_per_round.png",
        "grids",
        "final_model_ann.pt",
        "final_model_snn.pt",
    } <= files
    assert len(list((Path(out) / "grids").glob("*.png"))) == 2 * small_cfg.federation.rounds
    assert "ann" in (Path(out) / "summary.txt").read_text()


def test_faulty_and_malformed_replies_are_skipped_not_fatal(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(clients=3, rounds=1, arms=("ann",), attacks=("idlg",))

    def fault(partition: int, reply: Message) -> Message | None:
        if partition == 1:  # the client crashed
            return Message(Error(code=0, reason="injected crash"), reply_to=reply)
        if partition == 2:  # the client sent something without its metadata
            del reply.content["meta"]
        return None

    finals = federate(cfg, fault)
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert [r["client"] for r in rows] == [0]
    assert "ann" in finals


def test_results_are_not_mixed_with_an_earlier_run(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(rounds=1, arms=("ann",), attacks=("idlg",), iterations=1)
    federate(cfg)
    with pytest.raises(FileExistsError, match="overwrite=true"):
        federate(cfg)
    federate(cfg.replace(overwrite=True))
    assert len(read_rows(Path(cfg.results.out) / "leakage.csv")) == cfg.federation.clients


def test_attack_rounds_schedule_attacks_only_there_and_records_every_round(
    small_cfg: RunConfig,
) -> None:
    """attack_rounds=first,every:3: rounds 1 and 3 of 4 are attacked; every round is captured
    (attacked or not) and has its accuracy committed."""
    cfg = small_cfg.replace(rounds=4, arms=("ann",), attacks=("idlg",), iterations=1,
        attack_rounds="first,every:3",
    )  # fmt: skip
    federate(cfg)
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert sorted({int(r["round"]) for r in rows}) == [1, 3]
    assert len(rows) == 2 * cfg.federation.clients
    with ResultsStore.open_existing(cfg.results.out) as store:
        assert [r["round"] for r in store.rounds()] == [1, 2, 3, 4]
        assert all(r["accuracy"] is not None for r in store.rounds())
        captured = {(c["round"], c["client"]): bool(c["attacked"]) for c in store.captures()}
    assert captured == {
        (r, c): r in (1, 3) for r in range(1, 5) for c in range(cfg.federation.clients)
    }


def test_init_checkpoint_warm_starts_each_arm_and_refuses_what_does_not_fit(
    small_cfg: RunConfig, tmp_path: Path
) -> None:
    """{arm} picks each arm's file; the weights are loaded exactly and recorded with their
    SHA-256; a missing file, a non-state-dict and a model of another shape are named."""
    for arm in ("ann", "snn"):
        state = {
            k: torch.randn_like(v)
            for k, v in model_for(public_info(small_cfg.federation, small_cfg.data, arm))
            .state_dict()
            .items()
        }
        torch.save(state, tmp_path / f"final_model_{arm}.pt")
    cfg = small_cfg.replace(init_checkpoint=str(tmp_path / "final_model_{arm}.pt"))
    for arm in ("ann", "snn"):
        saved = torch.load(tmp_path / f"final_model_{arm}.pt", weights_only=True)
        got = initial_model(cfg.federation, cfg.data, arm).state_dict()
        assert all(torch.equal(got[k], saved[k]) for k in saved)
    record = init_record(cfg.federation, cfg.federated_arms)
    assert set(record) == set(cfg.federated_arms)
    assert (
        record["ann"]["sha256"]
        == hashlib.sha256((tmp_path / "final_model_ann.pt").read_bytes()).hexdigest()
    )
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    for name, error, message in (
        ("missing.pt", FileNotFoundError, "missing.pt .arm ann. is not a file"),
        ("junk.pt", ValueError, "junk.pt is not a PyTorch state dict"),
        ("other.pt", ValueError, "does not fit arm ann's LeNet: missing, extra or reshaped"),
    ):
        bad = small_cfg.replace(init_checkpoint=str(tmp_path / name))
        with pytest.raises(error, match=message):
            initial_model(bad.federation, bad.data, "ann")


def test_attack_schedule_terms() -> None:
    schedule = AttackSchedule.parse("first, every:10,last,25", 100)
    assert schedule.rounds_attacked() == [1, 10, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100]
    assert AttackSchedule.parse("all", 3).rounds_attacked() == [1, 2, 3]
    for bad, message in (
        ("every:0", "bad term 'every:0'"),
        ("1,x", "bad term 'x'"),
        ("", "is empty"),
        ("1,50", r"round\(s\) 50 .* beyond the run's rounds=20"),
    ):
        with pytest.raises(ValueError, match=message):
            AttackSchedule.parse(bad, 20)
    with pytest.raises(ValueError, match="attack_rounds: bad term"):
        RunConfig.load(overrides=["attack_rounds=every:-2"])


def test_a_failing_attack_or_scoring_costs_only_its_own_capture(small_cfg: RunConfig) -> None:
    cfg = small_cfg.replace(clients=3, rounds=1, arms=("ann",), attacks=("idlg",))
    logs: list[str] = []

    class Flaky(IDLG):
        def reconstruct(self, capture: Capture) -> Reconstruction:
            if capture.client == 1:
                raise RuntimeError("optimiser exploded")
            rec = super().reconstruct(capture)
            if capture.client == 2:  # a reconstruction the scorer cannot match to the truth
                return dataclasses.replace(rec, images=rec.images[..., :5])
            return rec

    out = Path(cfg.results.out)
    out.mkdir(parents=True)
    spy = Eavesdropper(
        "ann",
        public_info(cfg.federation, cfg.data, "ann"),
        [Flaky(AttackConfig(iterations=2))],
        ensure_judge(cfg.data, cfg.judge, cfg.runtime.device),
        replay_audit(cfg.federation, cfg.data),
        out,
        grids=True,
        log=logs.append,
    )
    tapped_fedsgd(cfg, spy, "ann", rounds=1)
    rows = read_rows(out / "leakage.csv")
    assert [r["client"] for r in rows] == [0, 1, 2]
    assert [r["status"] for r in rows][1:] == ["attack-failed", "score-failed"]
    assert rows[0]["status"] not in ("attack-failed", "score-failed")
    assert rows[0]["ssim"] is not None and rows[0]["label_correct"] is not None
    assert all(r["ssim"] is None and r["judge_pred"] is None for r in rows[1:])
    assert rows[2]["grad_loss"] is not None and rows[1]["grad_loss"] is None
    assert any("c1] idlg failed: RuntimeError: optimiser exploded" in line for line in logs)
    assert any("c2] idlg scoring failed: ValueError" in line for line in logs)
    assert (out / "grids" / "ann-round001.png").exists()


def test_grnn_on_lenet5_family_with_lif_neurons(small_cfg: RunConfig) -> None:
    """`--set attacks=...,grnn victim=lenet5 neuron=lif` runs end to end on both arms."""
    cfg = small_cfg.replace(rounds=1, victim="lenet5", neuron="lif", attacks=("idlg", "grnn"),
        iterations=5, grnn_iterations=10,
    )  # fmt: skip
    federate(cfg)
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert {(r["arm"], r["attack"]) for r in rows} == {
        (a, k) for a in ("ann", "snn") for k in ("idlg", "grnn")
    }
    assert len(rows) == 2 * 2 * cfg.federation.clients
    assert all(r["status"] in ("ok", "converged") for r in rows)
    public = public_info(cfg.federation, cfg.data, "snn")
    assert (public.arch, public.neuron) == ("snn-lenet5", "lif")


def test_injected_faults_are_left_out_and_recorded(small_cfg: RunConfig) -> None:
    """NaN, wrongly shaped and crashing clients: the run goes on with the sound replies."""
    cfg = small_cfg.replace(clients=4, rounds=1, arms=("ann",), attacks=("idlg",), iterations=2,
        faults=("nan@1", "shape@2", "error@3"),
    )  # fmt: skip
    finals = federate(cfg)
    with open(Path(cfg.results.out) / "faults.csv") as fh:
        faults = {f["client"]: f["reason"] for f in csv.DictReader(fh)}
    assert set(faults) == {"1", "2", "3"}  # a crashed client says who it is in its error
    assert "NaN/Inf" in faults["1"] and "has shape" in faults["2"]
    assert faults["3"] == "client error: RuntimeError: injected client failure"
    # The new global model is one FedSGD step with client 0's gradient alone.
    start = initial_model(cfg.federation, cfg.data, "ann")
    images, labels = private_batch(cfg.federation, cfg.data, 0, 4, 1)
    expected = sgd_step(start.state_dict(), loss_gradient(start, images, labels), cfg.federation.lr)
    for k, v in expected.items():
        assert torch.allclose(finals["ann"][k], v, rtol=0, atol=1e-7), k
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert [r["status"] for r in rows if r["client"] == 0] == ["ok"]
