"""DLG (Zhu et al. 2019): dummy input and soft dummy label optimised jointly."""

from __future__ import annotations

import torch
from torch import nn

from attacks.gradient_matching import GradientMatchingAttack, LabelTask, soft_cross_entropy
from attacks.types import Capture


class DLG(GradientMatchingAttack):
    name = "dlg"

    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        pub = capture.public
        logits = torch.randn(pub.samples, pub.num_classes, generator=gen).requires_grad_(True)

        def task_loss(out: torch.Tensor, rows: slice) -> torch.Tensor:
            return soft_cross_entropy(out, torch.softmax(logits[rows], dim=-1))

        return LabelTask([logits], task_loss, lambda: logits.argmax(dim=-1))
