"""The audit channel: ground truth for scoring reconstructions, never handed to an attack.

The evaluator replays the client's deterministic batch selection from the run config and
the ids the client reports, so no private data travels in any FL message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fl_sim.config import RunConfig
from fl_sim.task import private_batch


@dataclass(frozen=True)
class GroundTruth:
    """What the client really trained on: evaluator-only."""

    images: torch.Tensor  # [B,C,H,W]
    labels: torch.Tensor  # [B]


class ReplayAudit:
    """Ground truth of (round, partition) by replaying the client's batch selection."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def ground_truth(
        self, server_round: int, partition_id: int, num_partitions: int
    ) -> GroundTruth:
        images, labels = private_batch(self.cfg, partition_id, num_partitions, server_round)
        return GroundTruth(images=images, labels=labels)
