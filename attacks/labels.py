"""Label inference from the classifier layer's gradient (iDLG, Zhao et al. 2020)."""

from __future__ import annotations

import torch


def idlg_label(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None = None) -> int:
    """iDLG's rule for batch size 1 with cross-entropy.

    dL/dW_i = (p_i - y_i) h with non-negative features h (sigmoid outputs, or spike rates),
    so only the true class has a negative row sum. When every row sums to ~0 (the
    classifier saw no input, e.g. silent spiking layers), the bias gradient p_i - y_i,
    negative only for the true class, decides instead.
    """
    row_sums = weight_grad.sum(dim=1)
    if bias_grad is not None and torch.all(row_sums.abs() <= 1e-12):
        return int(torch.argmin(bias_grad))
    return int(torch.argmin(row_sums))
