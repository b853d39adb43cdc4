"""A passive tap on every client reply, mixed into any Flower strategy, and FedSGD.

The tap follows Flower's template: override ``aggregate_train``, call ``super()``; it only
reads the replies, so the sequence of global models is the same with or without it.
"""

from __future__ import annotations

import functools
import random
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from logging import ERROR

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result, Strategy

from fl_sim.federation.faults import EngineFailure, client_error, engine_failure, reply_fault
from fl_sim.federation.secagg import split_masked
from fl_sim.federation.training import sgd_step

# tap(server_round, global arrays the replies were computed at, replies)
Tap = Callable[[int, ArrayRecord, list[Message]], None]
# on_fault(server_round, node id, client partition id or None, reason): a client left out
# of aggregation (faulty reply, or no reply in time)
FaultSink = Callable[[int, int, int | None, str], None]
# evaluate_fn(server_round, global arrays) of Flower's Strategy.start
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


UPDATE_KINDS = ("weights", "gradient", "delta")


class Eavesdropping:
    """The eavesdropper's tap, mixed in before a Flower strategy (see ``tapped``): every train
    reply, with the global model sent, goes to a passive ``tap``; faulty replies are left out
    (``on_fault``); node sampling is seeded per round; rounds count from ``round_offset + 1``.

    Replies that are not weights (``update_kind`` "gradient": FedSGD; "delta": FedAvg deltas)
    are turned, after the tap and screening, into the weights they stand for (one SGD step
    ``sent - gradient_lr * g``; ``sent + delta``), so the strategy aggregates weights exactly
    as Flower intends (FedAvgM, FedAdam, FedMedian, Krum...) without a copy of its rule.
    """

    def __init__(
        self,
        *args: object,
        tap: Tap | None = None,
        on_fault: FaultSink | None = None,
        sampling_seed: int | None = None,
        round_offset: int = 0,
        update_kind: str = "weights",
        gradient_lr: float | None = None,
        node_partitions: dict[int, int] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        if update_kind not in UPDATE_KINDS:
            raise ValueError(f"update_kind {update_kind!r}; valid: {', '.join(UPDATE_KINDS)}")
        if update_kind == "gradient" and gradient_lr is None:
            raise ValueError("gradient replies need gradient_lr (the server's SGD step)")
        self.tap = tap
        self.on_fault = on_fault
        self.sampling_seed = sampling_seed
        # Rounds already done (a resumed run): Flower's loop counts 1..num_rounds, and every
        # entry point below adds this, so clients, tap, faults and evaluate_fn see true rounds.
        self.round_offset = round_offset
        self.update_kind = update_kind
        self.gradient_lr = gradient_lr
        self.sent_arrays: ArrayRecord | None = None
        self.sent_to: list[int] = []
        self.sent_messages: list[Message] = []
        # node id -> partition id, from every reply that said it (shared across the arms of a
        # run, whose nodes are the same): names the client of a later error or missing reply
        self.node_partitions = {} if node_partitions is None else node_partitions

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Flower's loop for ``num_rounds`` more rounds, numbered from ``round_offset + 1``
        (``evaluate_fn`` first sees ``round_offset`` with ``initial_arrays``)."""
        offset_fn = evaluate_fn
        if evaluate_fn is not None and self.round_offset:

            def offset_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
                return evaluate_fn(server_round + self.round_offset, arrays)

        return super().start(
            grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, offset_fn
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        self.sent_arrays = arrays
        with seeded_sampling(self.sampling_seed, server_round):
            messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sent_to = [msg.metadata.dst_node_id for msg in messages]
        self.sent_messages = messages  # the grid gives them their ids when it pushes them
        return messages

    def origin(self, msg: Message) -> int:
        """The node a reply stands for: its sender, or, for an error the SuperLink returns on
        a node's behalf (e.g. "node unavailable"), the node its instruction went to."""
        node = msg.metadata.src_node_id
        if node != SUPERLINK_NODE_ID:
            return node
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in self.sent_messages}
        return sent.get(msg.metadata.reply_to_message_id, node)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        return super().configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        replies = list(replies)
        for msg in replies:
            failure = engine_failure(msg)
            if failure is not None:
                raise EngineFailure(
                    f"round {server_round}: the simulation engine failed ({failure}); the "
                    "round is not committed"
                )
        for msg in replies:
            client = reported_client(msg)
            if client is not None:
                self.node_partitions[self.origin(msg)] = client
        self.record_missing(server_round, replies)
        seen, replies = split_masked(replies)  # under SecAgg+: masked updates, the sum
        if self.tap is not None and self.sent_arrays is not None:
            try:
                self.tap(server_round, self.sent_arrays, seen)
            except Exception:  # an attacker's failure must never stop the federation
                log(
                    ERROR,
                    "eavesdropper failed in round %s:\n%s",
                    server_round,
                    traceback.format_exc(),
                )
        sound = self.as_weights(self.screen(server_round, replies))
        return super().aggregate_train(server_round, sound)

    def screen(self, server_round: int, replies: list[Message]) -> list[Message]:
        """Replies fit to aggregate; the others go to ``on_fault`` (FedAvg would otherwise
        abort the round on an inconsistent reply, or average NaNs into the model)."""
        if self.sent_arrays is None:
            return replies
        sound = []
        for msg in replies:
            reason = reply_fault(msg, self.sent_arrays)
            if reason is None:
                sound.append(msg)
            elif self.on_fault is not None:
                self.on_fault(server_round, self.origin(msg), self.client_of(msg), reason)
        # A fixed summation order (replies arrive in any order): reruns and resumed runs
        # aggregate bit-identically.
        return sorted(sound, key=aggregation_order)

    def client_of(self, msg: Message) -> int | None:
        """The partition id of a reply: the one it reports, else the one its node reported
        before (an error reply of a client that crashed before saying who it is)."""
        client = reported_client(msg)
        return self.node_partitions.get(self.origin(msg)) if client is None else client

    def as_weights(self, replies: list[Message]) -> list[Message]:
        """Sound gradient or delta replies as new messages holding the weights they stand for
        (the tap's replies stay as received); weight replies as they are."""
        if self.update_kind == "weights" or self.sent_arrays is None:
            return replies
        sent = self.sent_arrays.to_torch_state_dict()
        lr = -1.0 if self.update_kind == "delta" else float(self.gradient_lr or 0.0)
        out = []
        for msg in replies:
            ((key, update),) = msg.content.array_records.items()
            content = RecordDict(dict(msg.content.items()))
            content[key] = ArrayRecord(sgd_step(sent, update.to_torch_state_dict(), lr))
            out.append(Message(content=content, metadata=msg.metadata))
        return out

    def record_missing(self, server_round: int, replies: list[Message]) -> None:
        """Clients sampled this round that did not reply before the round's timeout."""
        replied = {self.origin(msg) for msg in replies}
        for node in self.sent_to:
            if node not in replied and self.on_fault is not None:
                client = self.node_partitions.get(node)
                self.on_fault(server_round, node, client, "no reply before the round timeout")


@functools.cache
def tapped(strategy_cls: type) -> type:
    """``class Eavesdropping<Name>(Eavesdropping, strategy_cls)``: a Flower strategy with the
    tap; the same class object for the same strategy on every call."""
    if not issubclass(strategy_cls, Strategy):
        raise TypeError(f"{strategy_cls!r} is not a Flower strategy")
    if issubclass(strategy_cls, Eavesdropping):
        return strategy_cls
    name = f"Eavesdropping{strategy_cls.__name__}"
    doc = f"Flower's {strategy_cls.__name__} with the eavesdropper's tap (``Eavesdropping``)."
    attrs = {"__module__": __name__, "__qualname__": name, "__doc__": doc}
    return type(name, (Eavesdropping, strategy_cls), attrs)


# FedAvg with the tap: what a run with strategy=fedavg and weight replies uses.
EavesdroppingFedAvg = tapped(FedAvg)


def aggregation_order(msg: Message) -> tuple[int, int]:
    """Sort key of a sound reply: its partition id, then its node id."""
    client = reported_client(msg)
    return (-1 if client is None else client, msg.metadata.src_node_id)


def reported_client(msg: Message) -> int | None:
    """The partition id a reply reports, if it is readable: in its ``meta`` record, or, for
    an error reply, in the tagged exception of ``fl_sim.federation.faults``."""
    if msg.has_error():
        return client_error(msg.error.reason)[0]
    try:
        return int(msg.content["meta"]["partition-id"])
    except Exception:
        return None


@contextmanager
def seeded_sampling(seed: int | None, server_round: int) -> Iterator[None]:
    """Make Flower's node sampling (``random.sample``) a function of (seed, round), so both
    arms and a resumed run sample the same nodes; the global RNG state is restored after."""
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed * 1_000_003 + server_round)
    try:
        yield
    finally:
        random.setstate(state)


class EavesdroppingFedSGD(EavesdroppingFedAvg):
    """Clients reply with gradients; the weighted mean gradient takes one SGD step by key.
    (With ``lr=-1`` this is FedAvg over deltas: the mean delta is added to the model.)
    The server rule of strategy=fedavg for gradient and delta replies (``update_kind`` stays
    "weights": FedAvg averages the raw replies, then this steps once)."""

    def __init__(self, *args: object, lr: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lr = lr

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        mean_grad, metrics = super().aggregate_train(server_round, replies)
        if mean_grad is None or self.sent_arrays is None:
            return None, metrics
        state = self.sent_arrays.to_torch_state_dict()
        return ArrayRecord(sgd_step(state, mean_grad.to_torch_state_dict(), self.lr)), metrics
