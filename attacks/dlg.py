"""DLG (Zhu et al. 2019): dummy input and soft dummy label optimised jointly."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attacks.gradient_matching import GradientMatchingAttack, soft_cross_entropy
from attacks.types import Capture


class DLG(GradientMatchingAttack):
    name = "dlg"

    def labels_and_loss(
        self, model: nn.Module, capture: Capture, target: list[torch.Tensor], gen: torch.Generator
    ) -> tuple[
        list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor], Callable[[], torch.Tensor]
    ]:
        pub = capture.public
        label_logits = torch.randn(pub.batch_size, pub.num_classes, generator=gen).requires_grad_(
            True
        )

        def task_loss(logits: torch.Tensor) -> torch.Tensor:
            return soft_cross_entropy(logits, torch.softmax(label_logits, dim=-1))

        return [label_logits], task_loss, lambda: label_logits.argmax(dim=-1)
