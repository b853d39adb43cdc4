"""The federated task: which private batch a client uses in a round, and public facts of it."""

from __future__ import annotations

import torch

from attacks import PublicInfo
from fl_sim.config import RunConfig
from fl_sim.datasets import ImageData, load_dataset
from fl_sim.partition import partition_indices, sample_batch
from models import arm_model_name


def train_data(cfg: RunConfig) -> ImageData:
    return load_dataset(cfg.dataset, "train", cfg.data_root or None)


def private_batch(
    cfg: RunConfig, partition_id: int, num_partitions: int, server_round: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [B,C,H,W] and labels [B] client ``partition_id`` trains on in ``server_round``.

    A pure function of the config and these ids, so both arms see the same batches.
    """
    data = train_data(cfg)
    parts = partition_indices(data.labels, num_partitions, cfg.partition, cfg.alpha, cfg.seed)
    idx = sample_batch(parts[partition_id], cfg.batch_size, cfg.seed, server_round, partition_id)
    index = torch.as_tensor(idx, dtype=torch.long)
    return data.images[index], data.labels[index]


def public_info(cfg: RunConfig, arm: str) -> PublicInfo:
    """Hyperparameters every participant of the federation knows."""
    data = train_data(cfg)
    return PublicInfo(
        arch=arm_model_name(arm),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        batch_size=cfg.batch_size,
        T=cfg.T,
    )
