"""How an attack handles the unknown label: name -> builder ``(model, capture, generator) ->
LabelTask`` (extra variables optimised with the dummy, the victim's task loss on the dummy,
and the labels recovered)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.components.features import batch_leak
from attacks.labels import idlg_label
from attacks.local_update import TaskLoss, observed_update
from attacks.types import Capture
from attacks.victim import last_linear


@dataclass(frozen=True)
class LabelTask:
    """An attack's handling of the label: extra variables optimised with the dummy input,
    the task loss of the victim's logits on the dummy, and the labels it recovers."""

    variables: list[torch.Tensor]
    loss: TaskLoss  # (logits of some rows of the dummy batch, those rows) -> loss
    labels: Callable[[], torch.Tensor]


LabelTaskBuilder = Callable[[nn.Module, Capture, torch.Generator], LabelTask]


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft label, averaged over the batch (DLG's criterion)."""
    return torch.mean(torch.sum(-target_probs * F.log_softmax(logits, dim=-1), dim=-1))


def soft_label(model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
    """DLG (Zhu et al. 2019): a dummy label (logits drawn N(0,1) from ``gen`` after the dummy
    input) optimised jointly; cross-entropy against its softmax."""
    pub = capture.public
    logits = torch.randn(pub.samples, pub.num_classes, generator=gen).to(capture.device)
    logits.requires_grad_(True)

    def task_loss(out: torch.Tensor, rows: slice) -> torch.Tensor:
        return soft_cross_entropy(out, torch.softmax(logits[rows], dim=-1))

    return LabelTask([logits], task_loss, lambda: logits.argmax(dim=-1))


def idlg_labels(model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
    """iDLG (Zhao et al. 2020): the label read off the classifier gradient
    (:func:`attacks.labels.idlg_label`), then cross-entropy with it; nothing optimised.
    Beyond iDLG, a batch's labels come from the decomposition of its classifier gradient
    (:func:`attacks.components.features.batch_leak`, in the order of its per-sample inputs)."""
    update = observed_update(capture)
    if capture.public.samples != 1:
        label = batch_leak(model, update, capture.public).labels
    else:
        # FedAvg: every local step on the one sample has the label's sign pattern, so the
        # rule holds for the summed steps too
        name, fc = last_linear(model)
        bias = update.get(f"{name}.bias") if fc.bias is not None else None
        label = torch.tensor([idlg_label(update[f"{name}.weight"], bias)], device=capture.device)
    return LabelTask([], lambda logits, rows: F.cross_entropy(logits, label[rows]), lambda: label)


LABEL_TASKS: dict[str, LabelTaskBuilder] = {"soft": soft_label, "idlg": idlg_labels}
