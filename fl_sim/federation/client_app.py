"""Flower ClientApp (Message API): FedSGD (one private batch's gradient per round) or
FedAvg (local SGD steps; new weights or the delta), then the run's update transforms (a mod),
masked by Flower's SecAgg+ when the run asks for it (a mod)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from fl_sim.data.config import DataConfig
from fl_sim.data.loaders.base import time_major
from fl_sim.federation.config import FederationConfig
from fl_sim.federation.faults import tag_client_error
from fl_sim.federation.node_config import partition_of
from fl_sim.federation.secagg import secagg_client_mod
from fl_sim.federation.task import private_batch, public_info
from fl_sim.federation.training import local_sgd, loss_gradient
from fl_sim.federation.transforms.mod import update_transforms_mod
from fl_sim.ops.runtime_config import RuntimeConfig
from models.public import model_for

app = ClientApp()


def client_update(
    fed: FederationConfig,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    proximal_mu: float = 0.0,
) -> dict[str, torch.Tensor]:
    """What the client sends: FedSGD's gradient, or FedAvg's new weights or delta.
    ``proximal_mu`` (FedProx) acts on FedAvg's local steps only: a FedSGD gradient is taken
    at the global weights, where the proximal term's gradient is zero."""
    if fed.protocol == "fedsgd":
        return loss_gradient(model, images, labels)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    new = local_sgd(
        model, images, labels, fed.batch_size, fed.local_steps, fed.local_epochs, fed.lr,
        proximal_mu,
    )  # fmt: skip
    if fed.fedavg_update == "weights":
        return new
    return {k: new[k] - start[k] for k in new}


def report_errors_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Re-raise any exception of the train function (and its transforms) as one line with
    this client's partition id, so the server can record which client failed and why."""
    try:
        return call_next(msg, context)
    except Exception as err:
        try:
            partition_id: int | None = partition_of(context)[0]
        except ValueError:
            partition_id = None
        if partition_id is None:  # nothing to add: Flower reports it as it is
            raise
        raise tag_client_error(partition_id, err) from err


@app.train(mods=[report_errors_mod, secagg_client_mod, update_transforms_mod])
def train(msg: Message, context: Context) -> Message:
    """Reply with this round's update of the private data at the received global model
    (``update_transforms_mod`` then applies the run's transforms and faults to it)."""
    fed = FederationConfig.of_run(context.run_config)
    data = DataConfig.of_run(context.run_config)
    runtime = RuntimeConfig.of_run(context.run_config)
    torch.set_num_threads(runtime.threads)
    partition_id, num_partitions = partition_of(context)
    config = msg.content["config"]
    server_round, arm = int(config["server-round"]), str(config["arm"])
    public = public_info(fed, data, arm)
    device = runtime.torch_device
    model = model_for(public).to(device)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    inputs, labels = private_batch(fed, data, partition_id, num_partitions, server_round)
    # FedProx's weight of the proximal term, sent in the train config (Flower's FedProx)
    mu = float(config["proximal-mu"]) if "proximal-mu" in config else 0.0
    inputs, labels = time_major(inputs).to(device), labels.to(device)
    update = {k: v.cpu() for k, v in client_update(fed, model, inputs, labels, mu).items()}
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
