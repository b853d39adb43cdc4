"""Score a reconstruction against the audit ground truth: similarity metrics and the judge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attacks import Capture, PublicInfo, Reconstruction
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import Judge
from fl_sim.evaluation.metrics import match_reconstructions, sample_metrics, spike_l2
from fl_sim.results.schema import LeakageRow


@dataclass(frozen=True)
class Scored:
    """Leakage rows of one (capture, attack) plus the images in ground-truth order."""

    rows: list[dict[str, object]]
    matched_images: np.ndarray  # [B,C,H,W] or [B,T,C,H,W]: row i reconstructs sample i


def sample_major(rec: Reconstruction, public: PublicInfo) -> torch.Tensor:
    """The reconstruction in the data's layout: event frames come time-major [T,B,...]."""
    return rec.images.transpose(0, 1) if public.input_kind == "events" else rec.images


def score(
    arm: str, attack: str, capture: Capture, rec: Reconstruction, truth: GroundTruth, judge: Judge
) -> Scored:
    """One row per ground-truth sample; reconstructions matched to samples by least MSE.

    ``l2`` is the distance to the ground truth of the reconstruction as the attack output it
    (the paper's fidelity measure for spikes); MSE/PSNR/SSIM clip it to [0, 1] first.
    """
    gt = truth.images.numpy()
    recon = sample_major(rec, capture.public)
    perm = match_reconstructions(gt, recon.numpy())
    images = recon[perm]
    labels = rec.labels[perm]
    judged = judge.predict(images)
    rows: list[dict[str, object]] = []
    for i in range(len(gt)):
        m = sample_metrics(gt[i], images[i].numpy())
        label_true = int(truth.labels[i])
        rows.append(
            LeakageRow(
                arm=arm, round=capture.round, client=capture.client, attack=attack, sample=i,
                label_true=label_true, label_pred=int(labels[i]),
                label_correct=int(labels[i]) == label_true, judge_pred=int(judged[i]),
                judge_correct=int(judged[i]) == label_true, mse=m.mse, psnr=m.psnr, ssim=m.ssim,
                l2=spike_l2(gt[i], images[i].numpy()), grad_loss=rec.grad_loss,
                status=rec.status, seconds=rec.seconds,
            ).as_dict()
        )  # fmt: skip
    return Scored(rows, images.numpy())


def unscored_rows(
    arm: str, attack: str, capture: Capture, rec: Reconstruction, judge: Judge | None
) -> list[dict[str, object]]:
    """Rows for a capture without ground truth (outside a simulation): what the attack and
    the judge say, with every truth-dependent column left empty."""
    judged = judge.predict(sample_major(rec, capture.public)) if judge is not None else None
    return [
        LeakageRow(
            arm=arm, round=capture.round, client=capture.client, attack=attack, sample=i,
            label_pred=int(rec.labels[i]), judge_pred=None if judged is None else int(judged[i]),
            grad_loss=rec.grad_loss, status=rec.status, seconds=rec.seconds,
        ).as_dict()
        for i in range(len(rec.labels))
    ]  # fmt: skip


def failed_rows(
    arm: str,
    attack: str,
    capture: Capture,
    status: str,
    truth: GroundTruth | None,
    rec: Reconstruction | None = None,
) -> list[dict[str, object]]:
    """Rows recording that a capture's attack (``ATTACK_FAILED``) or scoring (``SCORE_FAILED``)
    failed: one per sample, true labels if known, the attack's loss and time if it ran, every
    metric empty, so a failure shows in the results instead of vanishing."""
    n = len(truth.labels) if truth is not None else capture.public.samples
    return [
        LeakageRow(
            arm=arm, round=capture.round, client=capture.client, attack=attack, sample=i,
            label_true=None if truth is None else int(truth.labels[i]),
            grad_loss=None if rec is None else rec.grad_loss,
            seconds=None if rec is None else rec.seconds, status=status,
        ).as_dict()
        for i in range(n)
    ]  # fmt: skip
