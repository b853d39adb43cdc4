"""A Flower Grid that delivers messages to a ClientApp in this process (fast tests).

Real runs use Flower's simulation or deployment engine; this grid only replaces transport.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


class InProcessGrid(Grid):
    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        run_config: dict,
        fault: Callable[[int, Message], Message | None] | None = None,
    ) -> None:
        self.client_app = client_app
        self.nodes = {100 + i: i for i in range(num_nodes)}  # node id -> partition id
        self.run_config = run_config
        self.fault = fault
        self._run = Run.create_empty(run_id=1)
        TaskIdentity.run_id = 1  # what Flower's runtime sets in a ServerApp process
        TaskIdentity.node_id = 0
        TaskIdentity.task_id = 1
        self._next = 0
        # each node's context state lives as long as the grid, as on a SuperNode (SecAgg+)
        self.states: dict[int, RecordDict] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(
            content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id
        )

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Every ClientApp call runs in a thread; replies not back within ``timeout`` are
        dropped, as Flower's grids do (the late thread finishes in the background)."""
        messages = list(messages)
        for msg in messages:
            self._next += 1
            msg.metadata.__dict__["_message_id"] = f"m{self._next}"
        pool = ThreadPoolExecutor(max_workers=max(1, len(messages)))
        futures = [pool.submit(self._deliver, msg) for msg in messages]
        pool.shutdown(wait=False)
        done, _ = wait(futures, timeout=timeout)
        return [f.result() for f in futures if f in done]

    def _deliver(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        partition = self.nodes[node]
        ctx = Context(
            run_id=1,
            node_id=node,
            node_config={"partition-id": partition, "num-partitions": len(self.nodes)},
            state=self.states.setdefault(node, RecordDict()),
            run_config=dict(self.run_config),
        )
        try:  # a copy, as transport gives each node its own (mods may change the content)
            reply = self.client_app(copy.deepcopy(msg), ctx)
        except Exception as err:  # Flower's runtime turns a ClientApp exception into this
            reply = Message(Error(code=0, reason=f"{type(err).__name__}: {err}"), reply_to=msg)
        if self.fault is not None:
            reply = self.fault(partition, reply) or reply
        return reply
