"""The federated task: which private batch a client uses in a round, and public facts of it."""

from __future__ import annotations

import functools

import numpy as np
import torch

from fl_sim.data.config import DataConfig
from fl_sim.data.registry import DataOptions, DataSplit, load_dataset
from fl_sim.data.splits import dataset_split as dataset_split  # re-exported for its callers
from fl_sim.evaluation.audit import ReplayAudit
from fl_sim.federation.config import FederationConfig
from fl_sim.federation.partition import partition_indices, sample_batch
from fl_sim.federation.transforms import update_chain
from models import victim_model_name
from models.public import PublicInfo


def train_data(data: DataConfig) -> DataSplit:
    return dataset_split(data, "train")


@functools.lru_cache(maxsize=8)
def client_partitions(
    dataset: str,
    data_root: str,
    num_partitions: int,
    scheme: str,
    alpha: float,
    seed: int,
    options: DataOptions | None = None,
) -> tuple[np.ndarray, ...]:
    """Dataset indices of every client's partition (cached: clients and auditor reuse it)."""
    labels = load_dataset(dataset, "train", data_root or None, options).labels
    return tuple(partition_indices(labels, num_partitions, scheme, alpha, seed))


def private_batch(
    fed: FederationConfig,
    data: DataConfig,
    partition_id: int,
    num_partitions: int,
    server_round: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N,C,H,W] and labels [N] client ``partition_id`` trains on in ``server_round``
    (N = ``fed.samples_per_round``: one batch for FedSGD, local_steps batches for FedAvg).

    A pure function of the config and these ids, so both arms see the same batches.
    """
    split = train_data(data)
    parts = client_partitions(
        data.dataset, data.data_root, num_partitions, fed.partition, fed.alpha, fed.seed,
        data.options,
    )  # fmt: skip
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition id {partition_id} is not in [0, {num_partitions})")
    idx = sample_batch(
        parts[partition_id], fed.samples_per_round, fed.seed, server_round, partition_id
    )
    index = torch.as_tensor(idx, dtype=torch.long)
    return split.take(index), split.labels[index]


def replay_audit(fed: FederationConfig, data: DataConfig) -> ReplayAudit:
    """The evaluator's ground truth of this federation: its clients' batch choice replayed."""
    return ReplayAudit(functools.partial(private_batch, fed, data))


def public_info(fed: FederationConfig, data: DataConfig, arm: str) -> PublicInfo:
    """Hyperparameters every participant of the federation knows, with the public update
    transforms (a fault is not public, so it never appears)."""
    split = train_data(data)
    return PublicInfo(
        arch=victim_model_name(fed.victim, arm),
        input_shape=split.input_shape,
        num_classes=split.num_classes,
        batch_size=fed.batch_size,
        T=fed.time_steps(data),
        neuron=fed.neuron,
        input_kind=split.kind,
        update=fed.update_kind,
        local_steps=fed.local_steps,
        local_epochs=fed.local_epochs,
        local_lr=fed.lr if fed.protocol == "fedavg" else 0.0,
        transforms=update_chain(fed.transforms, fed.faults).public_specs,
    )
