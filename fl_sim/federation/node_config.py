"""What a node tells its ClientApp: which data partition it holds, and of how many."""

from __future__ import annotations

from flwr.app import Context


def partition_of(context: Context) -> tuple[int, int]:
    """(partition id, number of partitions) from the node config (simulation or SuperNode)."""
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except KeyError as err:
        raise ValueError(
            "node config needs partition-id and num-partitions, e.g. "
            '--node-config "partition-id=0 num-partitions=4"'
        ) from err
