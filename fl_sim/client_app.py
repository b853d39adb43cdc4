"""Flower ClientApp: FedSGD on one private batch per round (Message API)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from attacks.victim import model_for
from fl_sim.config import RunConfig
from fl_sim.faults import inject, parse_fault_spec
from fl_sim.task import private_batch, public_info
from fl_sim.training import loss_gradient

app = ClientApp()


def partition_of(context: Context) -> tuple[int, int]:
    """(partition id, number of partitions) from the node config (simulation or SuperNode)."""
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except KeyError as err:
        raise ValueError(
            "node config needs partition-id and num-partitions, e.g. "
            '--node-config "partition-id=0 num-partitions=4"'
        ) from err


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Reply with the gradient of the private batch at the received global model."""
    cfg = RunConfig.from_mapping(context.run_config)
    torch.set_num_threads(cfg.threads)
    partition_id, num_partitions = partition_of(context)
    config = msg.content["config"]
    server_round, arm = int(config["server-round"]), str(config["arm"])
    public = public_info(cfg, arm)
    model = model_for(public)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    images, labels = private_batch(cfg, partition_id, num_partitions, server_round)
    grads = loss_gradient(model, images, labels)
    fault = parse_fault_spec(cfg.faults).get(partition_id)
    if fault is not None:
        grads = inject(fault, grads)
    meta = ConfigRecord(
        {
            "partition-id": partition_id,
            "num-partitions": num_partitions,
            "arch": public.arch,
            "batch-size": public.batch_size,
            "T": public.T,
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(grads),
            "metrics": MetricRecord({"num-examples": len(labels)}),
            "meta": meta,
        }
    )
    return Message(content=content, reply_to=msg)
