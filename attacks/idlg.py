"""iDLG (Zhao et al. 2020): label read off the classifier gradient, then L-BFGS on the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.gradient_matching import GradientMatchingAttack, LabelTask
from attacks.labels import idlg_label
from attacks.types import Capture
from attacks.victim import last_linear


class IDLG(GradientMatchingAttack):
    name = "idlg"

    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        if capture.public.batch_size != 1:
            raise ValueError(
                f"iDLG's label rule needs batch_size 1, got {capture.public.batch_size}; "
                "use dlg for larger batches"
            )
        name, fc = last_linear(model)
        bias = capture.update.get(f"{name}.bias") if fc.bias is not None else None
        label = torch.tensor([idlg_label(capture.update[f"{name}.weight"], bias)])
        return LabelTask([], lambda logits: F.cross_entropy(logits, label), lambda: label)
