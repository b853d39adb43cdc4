"""Score a reconstruction against the audit ground truth: similarity metrics and the judge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attacks import Capture, Reconstruction
from fl_sim.audit import GroundTruth
from fl_sim.judge import Judge
from fl_sim.metrics import image_metrics, match_reconstructions


@dataclass(frozen=True)
class Scored:
    """Leakage rows of one (capture, attack) plus the images in ground-truth order."""

    rows: list[dict[str, object]]
    matched_images: np.ndarray  # [B,C,H,W], row i reconstructs ground-truth sample i


def score(
    arm: str, attack: str, capture: Capture, rec: Reconstruction, truth: GroundTruth, judge: Judge
) -> Scored:
    """One row per ground-truth sample; reconstructions matched to samples by least MSE."""
    gt = truth.images.numpy()
    perm = match_reconstructions(gt, rec.images.numpy())
    images = rec.images[perm]
    labels = rec.labels[perm]
    judged = judge.predict(images)
    rows: list[dict[str, object]] = []
    for i in range(len(gt)):
        m = image_metrics(gt[i], images[i].numpy())
        label_true = int(truth.labels[i])
        rows.append(
            {
                "arm": arm,
                "round": capture.round,
                "client": capture.client,
                "attack": attack,
                "sample": i,
                "label_true": label_true,
                "label_pred": int(labels[i]),
                "label_correct": int(labels[i]) == label_true,
                "judge_pred": int(judged[i]),
                "judge_correct": int(judged[i]) == label_true,
                "mse": m.mse,
                "psnr": m.psnr,
                "ssim": m.ssim,
                "grad_loss": rec.grad_loss,
                "status": rec.status,
                "seconds": rec.seconds,
            }
        )
    return Scored(rows, images.numpy())


def unscored_rows(
    arm: str, attack: str, capture: Capture, rec: Reconstruction, judge: Judge | None
) -> list[dict[str, object]]:
    """Rows for a capture without ground truth (outside a simulation): what the attack and
    the judge say, with every truth-dependent column left empty."""
    judged = judge.predict(rec.images) if judge is not None else None
    return [
        {
            "arm": arm,
            "round": capture.round,
            "client": capture.client,
            "attack": attack,
            "sample": i,
            "label_true": None,
            "label_pred": int(rec.labels[i]),
            "label_correct": None,
            "judge_pred": None if judged is None else int(judged[i]),
            "judge_correct": None,
            "mse": None,
            "psnr": None,
            "ssim": None,
            "grad_loss": rec.grad_loss,
            "status": rec.status,
            "seconds": rec.seconds,
        }  # fmt: skip
        for i in range(len(rec.labels))
    ]
