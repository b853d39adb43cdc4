"""The audit channel: ground truth for scoring reconstructions, never handed to an attack.

The evaluator replays the client's deterministic batch selection from the run config and
the ids the client reports, so no private data travels in any FL message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from attacks.capture_io import load_private, write_private

# (partition_id, num_partitions, server_round) -> the images and labels that client trained on
BatchOf = Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GroundTruth:
    """What the client really trained on: evaluator-only."""

    images: torch.Tensor  # [B,C,H,W]
    labels: torch.Tensor  # [B]


class ReplayAudit:
    """Ground truth of (round, partition) by replaying the client's batch selection
    (``batch_of``: the federation's own, e.g. ``fl_sim.federation.task.private_batch``)."""

    def __init__(self, batch_of: BatchOf) -> None:
        self.batch_of = batch_of

    def ground_truth(
        self, server_round: int, partition_id: int, num_partitions: int
    ) -> GroundTruth:
        images, labels = self.batch_of(partition_id, num_partitions, server_round)
        return GroundTruth(images=images, labels=labels)


def save_truth(truth: GroundTruth, path: Path) -> Path:
    """Store ground truth next to a saved capture (owner-only: it is private client data)."""
    write_private(path, {"format": "fl-sim-truth", "images": truth.images, "labels": truth.labels})
    return path


def load_truth(path: Path) -> GroundTruth:
    """Read a ground-truth file saved beside a capture; errors are one line naming it."""
    blob = load_private(path, "an fl-sim ground-truth file")
    if not isinstance(blob, dict) or blob.get("format") != "fl-sim-truth":
        raise ValueError(f"{path} is not an fl-sim ground-truth file")
    if not {"images", "labels"} <= set(blob):
        raise ValueError(f"{path} is not a complete fl-sim ground-truth file")
    return GroundTruth(images=blob["images"], labels=blob["labels"])


def truth_path(capture_path: Path) -> Path:
    """Where the ground truth of a saved capture lives: ``<name>.truth.pt`` beside it."""
    return capture_path.with_name(capture_path.name.removesuffix(".pt") + ".truth.pt")
