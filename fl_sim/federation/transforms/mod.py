"""The Flower mod that applies the run's update transforms to a ClientApp's train reply.

Why a mod: transforms change only what leaves the client, after training, which is what a
Flower mod wraps (``(msg, context, call_next) -> Message``, like Flower's ``LocalDpMod``). The
train function stays unaware of them, and Flower's own mods compose with this one in
``ClientApp``/``@app.train(mods=[...])``. The cost is one ArrayRecord -> torch -> ArrayRecord
round trip (exact), paid only by a client that has a transform to apply.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

from fl_sim.federation.config import FederationConfig
from fl_sim.federation.node_config import partition_of
from fl_sim.federation.transforms.base import TransformContext
from fl_sim.federation.transforms.chain import update_chain


def update_transforms_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Train the client (``call_next``), then transform its reply's one ArrayRecord with the
    chain of the run config's ``transforms`` and ``faults`` for this client's partition."""
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    fed = FederationConfig.of_run(context.run_config)
    partition_id, num_partitions = partition_of(context)
    chain = update_chain(fed.transforms, fed.faults).for_partition(partition_id)
    if not chain:
        return reply
    records = reply.content.array_records
    if len(records) != 1:
        raise ValueError(f"update transforms need one ArrayRecord in the reply, got {len(records)}")
    ((key, arrays),) = records.items()
    ctx = TransformContext(
        partition_id=partition_id,
        num_partitions=num_partitions,
        server_round=int(msg.content["config"]["server-round"]),
        seed=fed.seed,
        update_kind=fed.update_kind,
        round_timeout=fed.round_timeout,
    )
    reply.content[key] = ArrayRecord(chain(arrays.to_torch_state_dict(), ctx))
    return reply
