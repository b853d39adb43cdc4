"""FedAvg with a passive tap on every client reply, and its FedSGD form.

Both follow Flower's template: override ``aggregate_train``, call ``super()``; the tap only
reads the replies, so the sequence of global models is the same with or without it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from logging import ERROR

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fl_sim.faults import reply_fault
from fl_sim.training import sgd_step

# tap(server_round, global arrays the replies were computed at, replies)
Tap = Callable[[int, ArrayRecord, list[Message]], None]
# on_fault(server_round, reply, reason): a reply left out of aggregation
FaultSink = Callable[[int, Message, str], None]


class EavesdroppingFedAvg(FedAvg):
    """FedAvg that hands every train reply, with the global model sent, to a passive tap."""

    def __init__(
        self,
        *args: object,
        tap: Tap | None = None,
        on_fault: FaultSink | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tap = tap
        self.on_fault = on_fault
        self.sent_arrays: ArrayRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.sent_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.tap is not None and self.sent_arrays is not None:
            try:
                self.tap(server_round, self.sent_arrays, replies)
            except Exception:  # an attacker's failure must never stop the federation
                log(
                    ERROR,
                    "eavesdropper failed in round %s:\n%s",
                    server_round,
                    traceback.format_exc(),
                )
        return super().aggregate_train(server_round, self.screen(server_round, replies))

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
                self.on_fault(server_round, msg, reason)
        return sound


class EavesdroppingFedSGD(EavesdroppingFedAvg):
    """Clients reply with gradients; the weighted mean gradient takes one SGD step by key."""

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
