"""The eavesdropping tap over Flower's strategies: passive on each, options, FedProx's client
term, and the resume refusal for server optimiser state."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from inproc_grid import InProcessGrid
from torch import nn

from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.client_app import client_update
from fl_sim.federation.resume import check_resumable
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import build_strategy, initial_model
from fl_sim.federation.strategies import STRATEGIES, parse_strategy_options
from fl_sim.federation.strategy import (
    EavesdroppingFedAvg,
    EavesdroppingFedSGD,
    tapped,
)
from fl_sim.federation.task import private_batch
from fl_sim.federation.training import local_sgd, sgd_step

CLIENTS, ROUNDS = 5, 3
# options that make each strategy do more than FedAvg (server state, robust selection)
OPTIONS = {
    "fedavgm": "server_momentum=0.9,server_learning_rate=0.5",
    "fedadam": "eta=0.05,tau=1e-3",
    "fedyogi": "eta=0.05",
    "fedprox": "proximal_mu=0.1",
    "fedtrimmedavg": "beta=0.2",
    "multikrum": "num_nodes_to_select=3",
    "bulyan": "num_malicious_nodes=0",
}
SHAPES = {"conv.weight": (2, 3), "fc.bias": (4,)}


@pytest.fixture(autouse=True)
def no_gc_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulyan's ``to_numpy_ndarrays(keep_input=False)`` runs gc.collect() per reply (0.2 s
    each in a process holding torch); skipping it changes no number."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def start_arrays() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord({k: Array(rng.normal(size=s).astype(np.float32)) for k, s in SHAPES.items()})


def raw_update(server_round: int, partition: int) -> dict[str, np.ndarray]:
    """A client's reply arrays (weights offset, gradient or delta: any numbers do)."""
    rng = np.random.default_rng([server_round, partition])
    return {k: rng.normal(scale=0.3, size=s).astype(np.float32) for k, s in SHAPES.items()}


def replies_to(messages: list[Message], server_round: int, kind: str) -> list[Message]:
    """Fabricated train replies, one per message, in partition order (node 100 + i)."""
    out = []
    for msg in sorted(messages, key=lambda m: m.metadata.dst_node_id):
        pid = msg.metadata.dst_node_id - 100
        update = raw_update(server_round, pid)
        if kind == "weights":
            sent = msg.content["arrays"]
            update = {k: sent[k].numpy() + v for k, v in update.items()}
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in update.items()}),
                "metrics": MetricRecord({"num-examples": pid + 1}),
                "meta": ConfigRecord({"partition-id": pid}),
            }
        )
        out.append(Message(content, reply_to=msg))
    return out


def as_weights(replies: list[Message], sent: ArrayRecord, kind: str, lr: float) -> list[Message]:
    """The test's own reading of gradient/delta replies as weights (w - lr g, w + delta)."""
    if kind == "weights":
        return replies
    step = -1.0 if kind == "delta" else lr
    state = sent.to_torch_state_dict()
    for msg in replies:
        update = msg.content["arrays"].to_torch_state_dict()
        msg.content["arrays"] = ArrayRecord(sgd_step(state, update, step))
    return replies


def config(strategy: str, kind: str) -> RunConfig:
    protocol = "fedsgd" if kind == "gradient" else "fedavg"
    update = "weights" if kind == "gradient" else kind
    return RunConfig.of(
        clients=CLIENTS, attacks=(), protocol=protocol, fedavg_update=update, lr=0.1,
        strategy=strategy, strategy_options=OPTIONS.get(strategy, ""),
    )  # fmt: skip


def run_rounds(strategy, cfg: RunConfig, kind: str, convert: bool) -> list[ArrayRecord]:
    """Flower's train loop driven by hand: the global model after each round."""
    grid = InProcessGrid(None, CLIENTS, {})
    arrays, models = start_arrays(), []
    for rnd in range(1, ROUNDS + 1):
        messages = list(strategy.configure_train(rnd, arrays, ConfigRecord({}), grid))
        replies = replies_to(messages, rnd, kind)
        if convert:
            replies = as_weights(replies, arrays, kind, cfg.federation.lr)
        new, _ = strategy.aggregate_train(rnd, replies)
        arrays = arrays if new is None else new
        models.append(arrays)
    return models


class Recorder:
    """A tap keeping copies of what it saw (Flower strategies may empty replies later)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, dict, dict]] = []

    def __call__(self, server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        got = {
            msg.metadata.src_node_id - 100: {
                k: a.numpy().copy() for k, a in msg.content["arrays"].items()
            }
            for msg in replies
        }
        self.seen.append((server_round, {k: a.numpy().copy() for k, a in sent.items()}, got))


@pytest.mark.parametrize("kind", ["weights", "gradient", "delta"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_tapped_strategy_gives_flowers_global_models_bit_for_bit(name: str, kind: str) -> None:
    cfg = config(name, kind)
    if name == "fedavg" and kind != "weights":  # today's FedSGD server step, unchanged
        reference = FedAvg(fraction_evaluate=0.0, min_available_nodes=CLIENTS)
        step = -1.0 if kind == "delta" else cfg.federation.lr
        expected, arrays = [], start_arrays()
        grid = InProcessGrid(None, CLIENTS, {})
        for rnd in range(1, ROUNDS + 1):
            messages = list(reference.configure_train(rnd, arrays, ConfigRecord({}), grid))
            mean, _ = reference.aggregate_train(rnd, replies_to(messages, rnd, kind))
            state = arrays.to_torch_state_dict()
            arrays = ArrayRecord(sgd_step(state, mean.to_torch_state_dict(), step))
            expected.append(arrays)
    else:
        options = parse_strategy_options(name, cfg.federation.strategy_options)
        reference = STRATEGIES[name](
            fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS, **options
        )
        expected = run_rounds(reference, cfg, kind, convert=True)
    tap = Recorder()
    strategy = build_strategy(cfg.federation, tap, lambda *a: pytest.fail(f"fault {a}"))
    assert type(strategy).__name__ == f"Eavesdropping{STRATEGIES[name].__name__}" or (
        name == "fedavg" and isinstance(strategy, EavesdroppingFedSGD)
    )
    got = run_rounds(strategy, cfg, kind, convert=False)
    start = start_arrays()
    for want, have in zip(expected, got, strict=True):
        assert list(have) == list(want)
        for k in want:
            a, b = want[k].numpy(), have[k].numpy()
            assert a.dtype == b.dtype and np.array_equal(a, b), (name, kind, k)
    assert any(not np.array_equal(got[-1][k].numpy(), start[k].numpy()) for k in SHAPES)
    # the tap saw every reply as the client sent it, with the global model it was sent
    assert [r for r, _, _ in tap.seen] == list(range(1, ROUNDS + 1))
    for (rnd, sent, replies), before in zip(tap.seen, [start, *got[:-1]], strict=True):
        assert all(np.array_equal(sent[k], before[k].numpy()) for k in SHAPES)
        assert sorted(replies) == list(range(CLIENTS))
        for pid, arrays in replies.items():
            raw = raw_update(rnd, pid)
            if kind == "weights":
                raw = {k: sent[k] + v for k, v in raw.items()}
            assert all(np.array_equal(arrays[k], raw[k]) for k in SHAPES)


def test_tapped_returns_one_class_per_strategy() -> None:
    assert tapped(FedAvg) is EavesdroppingFedAvg
    for cls in STRATEGIES.values():
        made = tapped(cls)
        assert made is tapped(cls) and issubclass(made, cls)
        assert made.__name__ == f"Eavesdropping{cls.__name__}"
    with pytest.raises(TypeError):
        tapped(dict)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"strategy": "fedfoo"}, ["'fedfoo'", "fedavgm", "fedprox"]),
        ({"strategy": "fedavgm", "strategy_options": "momentum=0.9"},
         ["'momentum'", "server_learning_rate, server_momentum"]),
        ({"strategy": "fedadam", "strategy_options": "fraction_train=0.5"},
         ["fraction_train", "tap", "eta"]),
        ({"strategy": "fedavgm", "strategy_options": "server_momentum=abc"},
         ["server_momentum='abc'", "float"]),
        ({"strategy": "krum", "strategy_options": "num_malicious_nodes=0.5"},
         ["num_malicious_nodes='0.5'", "int"]),
        ({"strategy": "bulyan", "strategy_options": "selection_rule=x"},
         ["'selection_rule'", "num_malicious_nodes"]),
        ({"strategy": "fedavg", "strategy_options": "eta"}, ["'eta'", "key=value"]),
        ({"strategy": "fedmedian", "strategy_options": "beta=0.1"}, ["'beta'", "none"]),
    ],
)  # fmt: skip
def test_strategy_option_errors_name_the_value_and_the_valid_ones(changes, words) -> None:
    with pytest.raises(ValueError) as err:
        RunConfig.of(attacks=(), **changes)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_strategy_options_are_read_as_the_arguments_types() -> None:
    opts = parse_strategy_options("fedadam", " eta=1, tau=1e-3 ,beta_1=0.5")
    assert opts == {"eta": 1.0, "tau": 1e-3, "beta_1": 0.5}
    assert all(isinstance(v, float) for v in opts.values())
    assert parse_strategy_options("krum", "num_malicious_nodes=2") == {"num_malicious_nodes": 2}
    assert parse_strategy_options("fedavg", "") == {}


def test_resume_refuses_server_optimiser_state_only() -> None:
    for strategy, options in [("fedadam", ""), ("fedavgm", "server_momentum=0.9")]:
        cfg = RunConfig.of(attacks=(), strategy=strategy, strategy_options=options)
        with pytest.raises(ValueError, match=f"cannot resume a run with strategy {strategy}"):
            check_resumable(cfg, cfg.replace(resume=True))
    for strategy, options in [("fedavgm", "server_learning_rate=0.5"), ("fedmedian", "")]:
        cfg = RunConfig.of(attacks=(), strategy=strategy, strategy_options=options)
        check_resumable(cfg, cfg.replace(resume=True))


def test_fedprox_term_in_local_sgd_is_exact(float64: None) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    images, labels = torch.randn(2, 1, 2, 2), torch.tensor([0, 2])
    w0 = [p.detach().clone() for p in model.parameters()]
    lr, mu = 0.5, 0.7
    # by hand: step 1 at w0 (the term's gradient is zero there), step 2 adds mu (w1 - w0)
    weights = [w.clone().requires_grad_() for w in w0]

    def ce(ws: list[torch.Tensor], row: int) -> torch.Tensor:
        logits = images[row].flatten()[None] @ ws[0].T + ws[1]
        return F.cross_entropy(logits, labels[row][None])

    grads = torch.autograd.grad(ce(weights, 0), weights)
    w1 = [(w - lr * g).detach().requires_grad_() for w, g in zip(weights, grads, strict=True)]
    grads = torch.autograd.grad(ce(w1, 1), w1)
    w2 = [w - lr * (g + mu * (w - a)) for w, g, a in zip(w1, grads, w0, strict=True)]
    new = local_sgd(model, images, labels, 1, 2, 1, lr, proximal_mu=mu)
    for got, want in zip(new.values(), w2, strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-14)
    model.load_state_dict(dict(zip(new, w0, strict=True)))
    plain = local_sgd(model, images, labels, 1, 2, 1, lr)
    assert any(not torch.equal(plain[k], new[k]) for k in new)


def test_fedprox_mu_reaches_the_client(small_cfg: RunConfig) -> None:
    """Flower's FedProx sends ``proximal-mu`` in the train config; the client applies it."""
    cfg = small_cfg.replace(attacks=(), arms=("ann",), protocol="fedavg", local_steps=2,
        strategy="fedprox", strategy_options="proximal_mu=0.5",
    )  # fmt: skip
    strategy = build_strategy(cfg.federation, None, lambda *a: None)
    grid = InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower())
    model = initial_model(cfg.federation, cfg.data, "ann")
    sent = ArrayRecord(model.state_dict())
    (msg, *_) = strategy.configure_train(1, sent, ConfigRecord({"arm": "ann"}), grid)
    assert msg.content["config"]["proximal-mu"] == 0.5
    reply = grid._deliver(msg).content["arrays"].to_torch_state_dict()
    images, labels = private_batch(
        cfg.federation, cfg.data, msg.metadata.dst_node_id - 100, cfg.federation.clients, 1
    )
    want = {
        mu: client_update(
            cfg.federation, initial_model(cfg.federation, cfg.data, "ann"), images, labels, mu
        )
        for mu in (0, 0.5)
    }
    assert all(torch.equal(reply[k], want[0.5][k]) for k in reply)
    assert any(not torch.equal(want[0][k], want[0.5][k]) for k in reply)
