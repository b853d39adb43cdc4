"""FedAvg clients (local SGD steps) and the unrolled eavesdropper that attacks them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Message
from inproc_grid import InProcessGrid

from attacks import Capture, PublicInfo
from attacks.local_update import observed_update, simulated_update
from attacks.victim import victim_from_capture
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.client_app import client_update
from fl_sim.federation.eavesdropper import capture_from_reply
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import build_strategy, initial_model, run_federation
from fl_sim.federation.task import private_batch, public_info, replay_audit
from fl_sim.federation.training import loss_gradient
from fl_sim.results.report import read_rows


def fedavg(cfg: RunConfig, **changes: object) -> RunConfig:
    return cfg.replace(protocol="fedavg", **changes)  # type: ignore[arg-type]


def ann_fedavg_capture(
    cfg: RunConfig, partition: int
) -> tuple[Capture, torch.Tensor, torch.Tensor]:
    """The round-1 FedAvg update of one of 4 clients on the initial ANN, with its data."""
    model = initial_model(cfg.federation, cfg.data, "ann")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = private_batch(cfg.federation, cfg.data, partition, 4, 1)
    sent = client_update(cfg.federation, model, images, labels)
    return (
        Capture(1, partition, sent, start, public_info(cfg.federation, cfg.data, "ann")),
        images,
        labels,
    )


def true_update(capture: Capture, images: torch.Tensor, labels: torch.Tensor) -> list:
    """The attacker's unrolled simulation, fed the client's true data and labels."""
    model = victim_from_capture(capture)
    params = [p.requires_grad_(True) for p in model.parameters()]

    def ce(logits: torch.Tensor, rows: slice) -> torch.Tensor:
        return F.cross_entropy(logits, labels[rows])

    return simulated_update(model, params, images, ce, capture.public, create_graph=True)


def matching_distance(capture: Capture, images: torch.Tensor, labels: torch.Tensor) -> float:
    """DLG's squared gradient distance of the true data's simulated update to the captured
    one (in gradient form), as the attacker reads the capture."""
    model = victim_from_capture(capture)
    observed = observed_update(capture)
    matched = true_update(capture, images, labels)
    names = [n for n, _ in model.named_parameters()]
    return sum(
        float(((m.detach() - observed[n]) ** 2).sum()) for n, m in zip(names, matched, strict=True)
    )


@pytest.mark.parametrize("update", ["weights", "delta"])
def test_unrolled_attacker_reproduces_the_clients_update_exactly(
    small_cfg: RunConfig, update: str
) -> None:
    """Through the real ClientApp and reply path, both arms, 2 epochs x 2 steps x batch 2."""
    cfg = fedavg(
        small_cfg, local_steps=2, local_epochs=2, batch_size=2, fedavg_update=update,
        attacks=("dlg",),
    )  # fmt: skip
    audit, checked = replay_audit(cfg.federation, cfg.data), []

    def tap(server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        state = sent.to_torch_state_dict()
        for msg in replies:
            capture, meta = capture_from_reply(msg, server_round, state, public)
            truth = audit.ground_truth(server_round, meta.partition_id, meta.num_partitions)
            assert len(truth.labels) == public.samples == 4
            simulated = true_update(capture, truth.images, truth.labels)
            observed = observed_update(capture)
            names = [n for n, _ in victim_from_capture(capture).named_parameters()]
            for name, value in zip(names, simulated, strict=True):
                assert torch.equal(value.detach(), observed[name]), (public.arch, name)
            checked.append((public.arch, server_round, meta.partition_id))

    for arm in cfg.federated_arms:
        public = public_info(cfg.federation, cfg.data, arm)
        strategy = build_strategy(cfg.federation, None, lambda *a: None)
        strategy.tap = tap
        strategy.start(
            grid=InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()),
            initial_arrays=ArrayRecord(initial_model(cfg.federation, cfg.data, arm).state_dict()),
            num_rounds=2,
            train_config=ConfigRecord({"arm": arm}),
        )
    assert len(checked) == len(cfg.federated_arms) * 2 * cfg.federation.clients


def test_one_local_step_update_equals_the_fedsgd_gradient(small_cfg: RunConfig) -> None:
    cfg = fedavg(small_cfg, batch_size=2, attacks=("dlg",))
    model = initial_model(cfg.federation, cfg.data, "ann")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = private_batch(cfg.federation, cfg.data, 0, cfg.federation.clients, 1)
    grads = loss_gradient(model, images, labels)
    sent = client_update(cfg.federation, model, images, labels)
    observed = observed_update(
        Capture(1, 0, sent, start, public_info(cfg.federation, cfg.data, "ann"))
    )
    for k, g in grads.items():
        torch.testing.assert_close(observed[k], g, rtol=1e-4, atol=1e-6)


def test_fedavg_server_averages_weights_or_adds_the_mean_delta(small_cfg: RunConfig) -> None:
    """Both reply forms give the same next global model: the mean of the clients' weights."""
    finals = {}
    for update in ("weights", "delta"):
        cfg = fedavg(
            small_cfg, rounds=1, arms=("ann",), attacks=(), fedavg_update=update,
            local_epochs=2, out=f"{small_cfg.results.out}-{update}",
        )  # fmt: skip
        finals[update] = run_federation(
            InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg
        )["ann"]
    cfg = fedavg(small_cfg, local_epochs=2, attacks=())
    expected = {}
    for pid in range(cfg.federation.clients):
        model = initial_model(cfg.federation, cfg.data, "ann")
        images, labels = private_batch(cfg.federation, cfg.data, pid, cfg.federation.clients, 1)
        for k, v in client_update(cfg.federation, model, images, labels).items():
            expected[k] = expected.get(k, 0) + v / cfg.federation.clients
    for k, v in expected.items():
        torch.testing.assert_close(finals["weights"][k], v, rtol=0, atol=1e-6)
        torch.testing.assert_close(finals["delta"][k], v, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_attacks_on_fedavg_updates_produce_rows(small_cfg: RunConfig) -> None:
    """iDLG (one sample, 3 local epochs) and DLG on both arms, through the federation."""
    cfg = fedavg(
        small_cfg, rounds=1, local_epochs=3, iterations=2, grids=False, attacks=("dlg", "idlg")
    )
    run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert len(rows) == len(cfg.federated_arms) * cfg.federation.clients * 2
    assert all(r["status"] in ("ok", "converged") for r in rows)
    assert all(r["label_correct"] for r in rows if r["attack"] == "idlg" and r["arm"] == "ann")


def test_the_true_data_solves_the_unrolled_matching_not_a_gradient_reading() -> None:
    """A 2-step FedAvg update (batch 1 per step): the client's true digits and labels match
    it exactly through the unrolled steps, and far from it when (w0 - w) / lr is read as
    one batch-2 gradient, so only the unrolled attacker has the data as a zero-loss point.
    (Whether L-BFGS then finds that point is trajectory-dependent: see the README.)"""
    for seed in (0, 1):
        cfg = RunConfig.of(protocol="fedavg", local_steps=2, attacks=("dlg",), seed=seed)
        capture, images, labels = ann_fedavg_capture(cfg, partition=1)
        as_gradient = Capture(
            1, 1, observed_update(capture), capture.global_state,
            dataclasses.replace(capture.public, update="gradient", batch_size=2),
        )  # fmt: skip
        norm = sum(float((t**2).sum()) for t in observed_update(capture).values())
        assert matching_distance(capture, images, labels) == 0.0
        naive = matching_distance(as_gradient, images, labels)
        assert naive > 0.1 * norm, (seed, naive, norm)


def test_public_info_rejects_an_unusable_fedavg_description() -> None:
    with pytest.raises(ValueError, match="local_lr > 0"):
        PublicInfo("lenet", (1, 28, 28), 10, 1, update="weights")
    with pytest.raises(ValueError, match="unknown update 'grads'"):
        PublicInfo("lenet", (1, 28, 28), 10, 1, update="grads")


def test_config_takes_every_attack_on_several_samples_per_round() -> None:
    cfg = RunConfig.of(protocol="fedavg", local_steps=2, attacks=("idlg", "rates"))
    assert cfg.federation.samples_per_round == 2
    with pytest.raises(ValueError, match="protocol: unknown value 'fedprox'"):
        RunConfig.of(protocol="fedprox")


def test_grnn_attacks_fedavg_updates_through_the_unrolled_steps() -> None:
    cfg = RunConfig.of(protocol="fedavg", local_steps=2, attacks=("grnn",), grnn_iterations=3)
    capture, images, labels = ann_fedavg_capture(cfg, partition=0)
    rec = cfg.attack.build_attacks()[0].reconstruct(capture)
    assert rec.images.shape == images.shape and rec.labels.shape == labels.shape
    assert rec.status == "ok" and rec.iterations == 3
