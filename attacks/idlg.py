"""iDLG (Zhao et al. 2020): label read off the classifier gradient, then L-BFGS on the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.gradient_matching import GradientMatchingAttack, LabelTask
from attacks.labels import idlg_label
from attacks.local_update import observed_update
from attacks.types import Capture
from attacks.victim import last_linear


class IDLG(GradientMatchingAttack):
    name = "idlg"

    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        if capture.public.samples != 1:
            raise ValueError(
                f"iDLG's label rule needs one sample per update, got {capture.public.samples} "
                "(batch_size x FedAvg local_steps); use dlg for more"
            )
        # FedAvg: every local step on the one sample has the label's sign pattern, so the
        # rule holds for the summed steps too
        update = observed_update(capture)
        name, fc = last_linear(model)
        bias = update.get(f"{name}.bias") if fc.bias is not None else None
        label = torch.tensor([idlg_label(update[f"{name}.weight"], bias)])
        return LabelTask(
            [], lambda logits, rows: F.cross_entropy(logits, label[rows]), lambda: label
        )
