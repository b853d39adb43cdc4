"""Fault records are one readable line with the client filled in; run.json records the arms
that ran and the versions of the libraries that shape results."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from inproc_grid import InProcessGrid

from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.faults import client_error, tag_client_error
from fl_sim.federation.resume import check_resumable
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import VERSIONED, initial_model, write_run_record
from fl_sim.federation.strategy import EavesdroppingFedSGD

# What Flower's simulation engine (Ray backend) records for a ClientApp that raised, as seen
# in faults.csv before this was cleaned up (paths shortened): colour codes, two tracebacks.
RAY_REASON = (
    "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor"
    ".run()\x1b[39m (pid=10472, ip=192.0.2.2, actor_id=9b25c56d, repr=<flwr.simulation."
    "ray_transport.ray_actor.ClientAppActor object at 0x7fc7505c1690>)\n"
    "                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/x/flwr/clientapp/client_app.py", line 161, in __call__\n'
    "    return self._registered_funcs[full_name](message, context)\n"
    '  File "/x/fl_sim/federation/transforms/faults.py", line 47, in __call__\n'
    '    raise RuntimeError("injected client failure")\n'
    "RuntimeError: injected client failure\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=10472, ip=192.0.2.2, actor_id=9b25c56d)\n"
    '  File "/x/flwr/simulation/ray_transport/ray_actor.py", line 65, in run\n'
    "    raise ClientAppException(str(ex)) from ex\n"
    "flwr.clientapp.client_app.ClientAppException: \n"
    "Exception ClientAppException occurred. Message: injected client failure'>"
)


def test_a_ray_traceback_becomes_its_exception_line() -> None:
    assert client_error(RAY_REASON) == (None, "RuntimeError: injected client failure")
    assert client_error("<class 'ValueError'>:<'bad input'>") == (None, "ValueError: bad input")
    assert client_error("\x1b[31mfirst\x1b[0m\nsecond\nlast") == (None, "first ... last")


def test_a_tagged_client_error_names_its_partition() -> None:
    tag = str(tag_client_error(3, ValueError("bad x\nmore detail")))
    assert tag == "[fl-sim partition-id=3] ValueError: bad x"
    reason = RAY_REASON.replace("Message: injected client failure", f"Message: {tag}")
    assert client_error(reason) == (3, "ValueError: bad x")
    assert client_error(f"ClientFailure: {tag}") == (3, "ValueError: bad x")


def test_faulty_node_gets_its_partition_from_earlier_replies(small_cfg: RunConfig) -> None:
    """A client that crashes without saying who it is (or never replies) is named by the
    partition its node reported in an earlier round."""
    cfg = small_cfg.replace(arms=("ann",), attacks=())
    faults: list[tuple[int, int, int | None, str]] = []

    calls: list[int] = []

    def fault(partition: int, reply: Message) -> Message | None:
        if partition == 1:
            calls.append(1)
            if len(calls) == 2:  # round 2: an error reply from the same node, without a tag
                sent = Message(
                    RecordDict(),
                    dst_node_id=reply.metadata.src_node_id,
                    message_type=reply.metadata.message_type,
                )
                sent.metadata.__dict__["_message_id"] = reply.metadata.reply_to_message_id
                return Message(Error(code=0, reason="boom\nat line 2"), reply_to=sent)
        return None

    strategy = EavesdroppingFedSGD(
        lr=cfg.federation.lr, on_fault=lambda *a: faults.append(a), fraction_evaluate=0.0,
        min_train_nodes=2, min_available_nodes=2,
    )  # fmt: skip
    grid = InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower(), fault)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model(cfg.federation, cfg.data, "ann").state_dict()),
        num_rounds=2,
        train_config=ConfigRecord({"arm": "ann"}),
    )
    assert faults == [(2, 101, 1, "client error: boom ... at line 2")]
    assert strategy.node_partitions == {100: 0, 101: 1}
    strategy.sent_to = [101]
    strategy.record_missing(3, [])
    assert faults[-1] == (3, 101, 1, "no reply before the round timeout")


def test_run_record_has_the_arms_that_ran_and_library_versions(tmp_path: Path) -> None:
    judge = SimpleNamespace(
        arch="lenet5", dataset="mnist5k", accuracy=0.9, pretrained="none", epochs=1,
        seconds=1.0, train_size=1, test_size=1, data_options={}, path=tmp_path / "j.pt",
    )  # fmt: skip
    for cfg, arms in (
        (RunConfig(), ["ann", "snn"]),
        (RunConfig.of(dataset="nmnist-emulated"), ["snn"]),
    ):
        record = write_run_record(tmp_path, cfg, judge)  # type: ignore[arg-type]
        written = json.loads((tmp_path / "run.json").read_text())
        assert written == json.loads(json.dumps(record))
        assert written["config"]["arms"] == arms
        assert list(written["versions"]) == list(VERSIONED)
        assert {"torch", "flwr", "ray", "spikingjelly", "numpy", "scipy"} <= set(VERSIONED)
        assert all(isinstance(v, str) and v for v in written["versions"].values())
        assert written["versions"]["torch"] != "absent"
        # A resume (or `flwr run` with resume=true) with arms unset matches the stored arms.
        check_resumable(RunConfig.from_mapping(written["config"]), cfg)


def test_an_error_the_superlink_returns_for_a_node_counts_once_for_that_node() -> None:
    """A stopped SuperNode's missing reply comes back as the SuperLink's "node unavailable"
    error (sent from the SuperLink's own node id): one fault, for the node it stands for."""
    faults: list[tuple[int, int, int | None, str]] = []
    strategy = EavesdroppingFedSGD(lr=0.1, on_fault=lambda *a: faults.append(a))
    sent = Message(RecordDict(), dst_node_id=101, message_type="train")
    sent.metadata.__dict__["_message_id"] = "instruction-101"
    strategy.sent_messages, strategy.sent_to = [sent], [101]
    strategy.node_partitions[101] = 1
    reply = Message(Error(code=5, reason="Error: Node Unavailable"), reply_to=sent)
    reply.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
    assert reply.metadata.src_node_id == SUPERLINK_NODE_ID
    assert strategy.origin(reply) == 101
    strategy.record_missing(1, [reply])
    assert faults == []  # it replied (with an error), so it is not also missing
    strategy.sent_arrays = ArrayRecord({"w": torch.zeros(1)})
    assert strategy.screen(1, [reply]) == []
    assert faults == [(1, 101, 1, "client error: Error: Node Unavailable")]
