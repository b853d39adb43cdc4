"""Flower's SecAgg+ under the Message-API strategies: the server sees each client's update
only masked, and the strategy gets the secure sum.

Why an adapter and not Flower's ``SecAggPlusWorkflow`` as a ServerApp workflow: in Flower
1.41 SecAgg+ exists only on the legacy path (``LegacyContext``, a legacy ``Strategy``'s
``configure_fit``/``aggregate_fit``, FitIns/FitRes records), while this project's strategies
(``flwr.serverapp.strategy``, with the tap) only call ``grid.send_and_receive``. So
``SecAggPlusGrid`` answers a round's train call by running Flower's ``SecAggPlusWorkflow``
unchanged, with a relay in place of the legacy strategy, and the client runs Flower's
``secaggplus_mod`` unchanged, with an adapter between it and the Message-API train function.
Like Flower's legacy workflow, every sound reply handed to the strategy carries the secure
aggregate (so FedAvg's weighted mean, FedAdam's step... act on it); the per-client record the
eavesdropper sees instead is what really arrived: the masked vector (``MASKED``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    bytes_to_ndarray,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_extract, parameters_mod
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WfKey
from flwr.serverapp import Grid

from fl_sim.federation.node_config import partition_of

SECAGG_NAMES = ("none", "secaggplus")
# Record of a reply handed to the strategy that holds the client's update as the server
# received it (the masked vector, decoded as if it were the only one): for the tap only.
MASKED = "masked"
# Train-config entry with the global model's array names (legacy records number them)
ARRAY_NAMES = "array-names"
# Strategies that need each client's own update: SecAgg+ gives the server only the sum.
PER_CLIENT_STRATEGIES = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")


@dataclass(frozen=True)
class SecAggSpec:
    """``secagg=secaggplus[:KEY=VALUE...]``: Flower's SecAgg+ parameters. ``shares`` and
    ``threshold`` are counts (integers) or fractions (with a dot) as in Flower's
    ``SecAggPlusWorkflow``: by default each client shares its keys with all sampled clients
    and half of them can unmask a dropped one. ``clip`` is the range updates are clipped to
    before quantisation (Flower's default 8)."""

    shares: int | float = 1.0
    threshold: int | float = 0.5
    clip: float = 8.0

    @classmethod
    def parse(cls, text: str) -> SecAggSpec | None:
        """The spec of the ``secagg`` config key; None for "none"."""
        name, *items = text.strip().split(":")
        if name not in SECAGG_NAMES:
            raise ValueError(f"secagg: unknown {name!r}; valid: {', '.join(SECAGG_NAMES)}")
        if name == "none":
            if items:
                raise ValueError(f"secagg: 'none' takes no parameters, got {text!r}")
            return None
        fields = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, int | float] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or key not in fields:
                raise ValueError(
                    f"secagg: {item!r} is not KEY=VALUE with KEY in {', '.join(fields)}"
                )
            try:
                values[key] = float(value) if "." in value or key == "clip" else int(value)
            except ValueError:
                raise ValueError(f"secagg: {key}={value!r} is not a number") from None
        spec = cls(**values)
        if not spec.clip > 0:
            raise ValueError(f"secagg: clip must be > 0, got {spec.clip}")
        spec.workflow(max_weight=1.0)  # Flower checks shares and threshold
        return spec

    def __str__(self) -> str:
        return f"secaggplus:shares={self.shares}:threshold={self.threshold}:clip={self.clip}"

    def workflow(self, max_weight: float, timeout: float | None = None) -> SecAggPlusWorkflow:
        """Flower's workflow with these parameters (its own checks raise ValueError)."""
        try:
            return SecAggPlusWorkflow(
                num_shares=self.shares,
                reconstruction_threshold=self.threshold,
                max_weight=max_weight,
                clipping_range=self.clip,
                timeout=timeout,
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"secagg: {err}") from None

    def check_federation(self, sampled: int, strategy: str) -> None:
        """Refuse what SecAgg+ cannot protect or serve: fewer than 3 sampled clients per
        round (with 2, each learns the other's update from the sum), or a strategy that
        needs each client's update."""
        if sampled < 3:
            raise ValueError(
                f"secagg: SecAgg+ needs at least 3 clients per round (clients x fraction), got "
                f"{sampled}: with 2, each client learns the other's update from the sum"
            )
        if strategy in PER_CLIENT_STRATEGIES:
            raise ValueError(
                f"secagg: strategy {strategy!r} needs each client's update, which SecAgg+ "
                "hides; use an averaging strategy (not "
                f"{', '.join(PER_CLIENT_STRATEGIES)})"
            )
        if isinstance(self.shares, int) and self.shares > sampled:
            raise ValueError(f"secagg: shares={self.shares} exceeds the {sampled} sampled clients")


class SecAggPlusGrid(Grid):
    """A Grid that runs each round's train messages through Flower's SecAgg+ workflow and
    hands the strategy one reply per client that completed it (the secure aggregate, with
    the client's masked vector under ``MASKED``), or the error replies of those that did not.
    Everything else goes to the wrapped grid unchanged."""

    def __init__(self, grid: Grid, spec: SecAggSpec, max_weight: float) -> None:
        self.inner, self.spec = grid, spec
        self.workflow = spec.workflow(max_weight)
        self._exchanges: list[tuple[list[Message], list[Message]]] | None = None

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        if self._exchanges is not None:  # a stage of the protocol under way
            replies = list(self.inner.send_and_receive(messages, timeout=timeout))
            self._exchanges.append((messages, replies))
            return replies
        if not messages or messages[0].metadata.message_type != MessageType.TRAIN:
            return self.inner.send_and_receive(messages, timeout=timeout)
        return self.secure_round(messages, timeout)

    def secure_round(self, messages: list[Message], timeout: float | None) -> list[Message]:
        """Flower's four SecAgg+ stages for these train messages; see the class."""
        sent = messages[0].content["arrays"]
        server_round = int(messages[0].content["config"]["server-round"])
        relay = _Relay(self, messages, list(sent.keys()))
        context = LegacyContext(
            Context(run_id=self.inner.run.run_id, node_id=0, node_config={}, state=RecordDict(),
                    run_config={}),
            strategy=relay,  # type: ignore[arg-type]
        )  # fmt: skip
        context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WfKey.CURRENT_ROUND: server_round}
        )
        context.state.array_records[MAIN_PARAMS_RECORD] = sent
        self._exchanges = []
        try:
            self.workflow.timeout = timeout
            self.workflow(self, context)
            exchanges = self._exchanges
        finally:
            self._exchanges = None
        return self.replies(exchanges, relay.aggregate, sent)

    def replies(
        self,
        exchanges: list[tuple[list[Message], list[Message]]],
        aggregate: list[np.ndarray] | None,
        sent: ArrayRecord,
    ) -> list[Message]:
        """Per node that replied: its first error in the stages up to the masked vectors,
        else its masked-vector reply carrying the aggregate (an error reply if the protocol
        halted before unmasking). A node with no reply stays missing, as in a plain round;
        errors in the unmask stage do not matter (SecAgg+ recovers from them)."""
        out: dict[int, Message] = {}
        for _, replies in exchanges[:3]:
            for msg in replies:
                if msg.has_error():
                    out.setdefault(msg.metadata.src_node_id, msg)
        masked_stage = exchanges[2][1] if len(exchanges) > 2 else []
        for msg in masked_stage:
            node = msg.metadata.src_node_id
            if node in out:
                continue
            if aggregate is None:
                error = Error(code=0, reason="secure aggregation halted: too few clients left")
                out[node] = Message(error=error, metadata=msg.metadata)
                continue
            fitres = compat.recorddict_to_fitres(msg.content, keep_input=True)
            masked = msg.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
            content = RecordDict(
                {
                    "arrays": like(sent, aggregate),
                    "metrics": MetricRecord({"num-examples": fitres.num_examples}),
                    MASKED: like(sent, self.decode_alone(masked)),  # type: ignore[arg-type]
                }
            )
            if "meta" in msg.content:
                content["meta"] = msg.content["meta"]
            out[node] = Message(content=content, metadata=msg.metadata)
        return list(out.values())

    def decode_alone(self, masked: list[bytes]) -> list[np.ndarray]:
        """A client's masked vector read as the server would read a sum of one update: what
        an eavesdropper holding only this reply can make of it."""
        flow = self.workflow
        vectors = parameters_mod([bytes_to_ndarray(b) for b in masked], flow.modulus_range)
        q_ratio, vectors = factor_extract(vectors)
        arrays = dequantize(vectors, flow.clipping_range, flow.quantization_range)
        scale = flow.quantization_range / max(int(q_ratio), 1)
        return [a * scale for a in arrays]

    # The rest of the Grid interface is the wrapped grid's.
    def set_run(self, run_id: int) -> None:
        self.inner.set_run(run_id)

    @property
    def run(self):  # type: ignore[no-untyped-def]
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[no-untyped-def]
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)


class _Relay:
    """Stands in for the legacy strategy Flower's workflow consults: ``configure_fit`` hands
    it the Message-API strategy's own train instructions, ``aggregate_fit`` keeps the secure
    aggregate (every result carries it) instead of aggregating anything itself."""

    def __init__(self, grid: Grid, messages: list[Message], names: list[str]) -> None:
        self.grid, self.messages, self.names = grid, messages, names
        self.aggregate: list[np.ndarray] | None = None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: object
    ) -> list[tuple[GridClientProxy, FitIns]]:
        run_id = self.grid.run.run_id  # type: ignore[attr-defined]
        out = []
        for msg in self.messages:
            config = dict(msg.content["config"].items())
            config[ARRAY_NAMES] = ",".join(self.names)
            arrays = msg.content["arrays"]
            fitins = FitIns(ndarrays_to_parameters([a.numpy() for a in arrays.values()]), config)
            out.append((GridClientProxy(msg.metadata.dst_node_id, self.grid, run_id), fitins))
        return out

    def aggregate_fit(
        self, server_round: int, results: list[tuple[object, FitRes]], failures: list[object]
    ) -> tuple[Parameters | None, dict[str, object]]:
        if results:
            self.aggregate = parameters_to_ndarrays(results[0][1].parameters)
            return results[0][1].parameters, {}
        return None, {}


def like(sent: ArrayRecord, arrays: list[np.ndarray]) -> ArrayRecord:
    """``arrays`` (SecAgg+'s float64 results, in the model's order) as an ArrayRecord with
    the names and dtypes of the global model ``sent``."""
    pairs = zip(sent.items(), arrays, strict=True)
    return ArrayRecord(
        array_dict={n: Array(np.asarray(a, dtype=ref.numpy().dtype)) for (n, ref), a in pairs}
    )


def split_masked(replies: list[Message]) -> tuple[list[Message], list[Message]]:
    """(what the tap sees, what the strategy aggregates): for replies that carry ``MASKED``,
    the masked update as the tap's ``arrays``, and the reply without it for aggregation."""
    if not any(not m.has_error() and MASKED in m.content for m in replies):
        return replies, replies
    seen, kept = [], []
    for msg in replies:
        if msg.has_error() or MASKED not in msg.content:
            seen.append(msg)
            kept.append(msg)
            continue
        items = dict(msg.content.items())
        masked = items.pop(MASKED)
        kept.append(Message(content=RecordDict(items), metadata=msg.metadata))
        seen.append(Message(content=RecordDict({**items, "arrays": masked}), metadata=msg.metadata))
    return seen, kept


def secagg_client_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``secaggplus_mod`` for SecAgg+ train messages (others pass through), with
    the Message-API train function under it; its stochastic quantisation is seeded by
    (run seed, round, partition) so a run's aggregate is reproducible."""
    if (
        msg.metadata.message_type != MessageType.TRAIN
        or RECORD_KEY_CONFIGS not in msg.content.config_records
    ):
        return call_next(msg, context)
    stage = msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
    if stage != Stage.COLLECT_MASKED_VECTORS:
        return secaggplus_mod(msg, context, call_next)
    from fl_sim.federation.config import FederationConfig

    seed = FederationConfig.of_run(context.run_config).seed
    server_round = int(msg.content["fitins.config"]["server-round"])
    partition = partition_of(context)[0]
    with numpy_seeded((seed, server_round, partition)):
        return secaggplus_mod(msg, context, functools.partial(_legacy_train, call_next))


def _legacy_train(call_next: ClientAppCallable, msg: Message, context: Context) -> Message:
    """FitIns records in, the train function's reply as FitRes records out (with its meta)."""
    config = msg.content["fitins.config"]
    names = str(config[ARRAY_NAMES]).split(",")
    params = msg.content["fitins.parameters"]
    arrays = ArrayRecord(array_dict=dict(zip(names, params.values(), strict=True)))
    inner_config = ConfigRecord({k: v for k, v in config.items() if k != ARRAY_NAMES})
    inner = Message(RecordDict({"arrays": arrays, "config": inner_config}), metadata=msg.metadata)
    reply = call_next(inner, context)
    if reply.has_error():
        raise RuntimeError(reply.error.reason)
    update = [a.numpy() for a in reply.content["arrays"].values()]
    num = int(reply.content["metrics"]["num-examples"])
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(update), num, {})
    content = compat.fitres_to_recorddict(fitres, keep_input=False)
    content["meta"] = reply.content["meta"]
    return Message(content, reply_to=msg)


@contextlib.contextmanager
def numpy_seeded(key: tuple[int, ...]) -> Iterator[None]:
    """NumPy's global RNG seeded by ``key`` inside, restored after."""
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence(list(key)).generate_state(1)[0])
    try:
        yield
    finally:
        np.random.set_state(state)
