"""Flower ClientApp (Message API): FedSGD (one private batch's gradient per round) or
FedAvg (local SGD steps; new weights or the delta)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_sim.config import RunConfig
from fl_sim.data.loaders.base import time_major
from fl_sim.federation.faults import inject, parse_fault_spec
from fl_sim.federation.task import private_batch, public_info
from fl_sim.federation.training import local_sgd, loss_gradient
from models.public import model_for

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


def client_update(
    cfg: RunConfig, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """What the client sends: FedSGD's gradient, or FedAvg's new weights or delta."""
    if cfg.protocol == "fedsgd":
        return loss_gradient(model, images, labels)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    new = local_sgd(
        model, images, labels, cfg.batch_size, cfg.local_steps, cfg.local_epochs, cfg.lr
    )
    if cfg.fedavg_update == "weights":
        return new
    return {k: new[k] - start[k] for k in new}


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Reply with this round's update of the private data at the received global model."""
    cfg = RunConfig.from_mapping(context.run_config)
    torch.set_num_threads(cfg.threads)
    partition_id, num_partitions = partition_of(context)
    config = msg.content["config"]
    server_round, arm = int(config["server-round"]), str(config["arm"])
    public = public_info(cfg, arm)
    model = model_for(public)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    inputs, labels = private_batch(cfg, partition_id, num_partitions, server_round)
    update = client_update(cfg, model, time_major(inputs), labels)
    fault = parse_fault_spec(cfg.faults).get(partition_id)
    if fault is not None:
        update = inject(fault, update, cfg.round_timeout)
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
            "arrays": ArrayRecord(update),
            "metrics": MetricRecord({"num-examples": len(labels)}),
            "meta": meta,
        }
    )
    return Message(content=content, reply_to=msg)
