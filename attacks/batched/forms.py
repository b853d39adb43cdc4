"""Components in batched form: P problems at once, each equal row by row to the looped
component it stands for (checked on random inputs by :func:`checked` before use).

- label tasks: ``(logits [k,B,K], label variables [k,*shape] each, per-problem constants
  [k,...] each) -> task loss per problem [k]``, built from the looped ``LabelTask``s;
- objectives: ``(simulated [k,m_l] per layer, target [k,m_l] per layer) -> [k]``;
- regularisers: ``dummy variables [k,*shape] -> [k]``.

A component without a batched form here is refused by the grouped engine (the vmap engine
calls the looped objectives and regularisers themselves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from attacks.components.label_tasks import LabelTask
from attacks.components.objectives import OBJECTIVES
from attacks.components.regularisers import REGULARISERS

BatchedTaskLoss = Callable[
    [torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]], torch.Tensor
]
TaskBuilder = Callable[[Sequence[LabelTask]], tuple[BatchedTaskLoss, dict[str, torch.Tensor]]]
BatchedObjective = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]
BatchedRegulariser = Callable[[torch.Tensor], torch.Tensor]


def _soft_task(tasks: Sequence[LabelTask]) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    """DLG: soft-label cross-entropy against softmax of the optimised label logits."""

    def loss(out: torch.Tensor, variables: list[torch.Tensor], consts: dict) -> torch.Tensor:
        target = torch.softmax(variables[0], dim=-1)
        return torch.mean(torch.sum(-target * F.log_softmax(out, dim=-1), dim=-1), dim=-1)

    return loss, {}


def _idlg_task(tasks: Sequence[LabelTask]) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    """iDLG: cross-entropy with the label inferred from the classifier gradient."""

    def loss(out: torch.Tensor, variables: list[torch.Tensor], consts: dict) -> torch.Tensor:
        k, b, c = out.shape
        ce = F.cross_entropy(
            out.reshape(k * b, c), consts["label"].reshape(k * b), reduction="none"
        )
        return ce.view(k, b).mean(dim=1)

    return loss, {"label": torch.stack([t.labels().detach() for t in tasks])}


class _SquaredDistance(torch.autograd.Function):
    """Row-wise ``((g - t) ** 2).sum(1)`` with a one-op backward ``2 (g - t) grad`` (autograd's
    pow/sub/sum chain costs three passes over every simulated gradient); not differentiable
    twice, which the objectives never need."""

    @staticmethod
    def forward(ctx: Any, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = g - t
        ctx.save_for_backward(d)
        return (d * d).sum(dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (d,) = ctx.saved_tensors
        return d * (2 * grad).unsqueeze(1), None


def _l2(grads: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    dist: torch.Tensor = 0  # type: ignore[assignment]
    for g, t in zip(grads, targets, strict=True):  # gradient_distance's order and summation
        dist = dist + _SquaredDistance.apply(g, t)
    return dist


def _cosine(grads: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    dot = sum((g * t).sum(dim=1) for g, t in zip(grads, targets, strict=True))
    norm_g = sum(g.pow(2).sum(dim=1) for g in grads)
    norm_t = sum(t.pow(2).sum(dim=1) for t in targets)
    return 1 - dot / norm_g.sqrt() / norm_t.sqrt()  # type: ignore[union-attr,return-value]


def _tv(x: torch.Tensor) -> torch.Tensor:
    dx = torch.abs(x[..., :, :-1] - x[..., :, 1:]).flatten(1).mean(dim=1)
    dy = torch.abs(x[..., :-1, :] - x[..., 1:, :]).flatten(1).mean(dim=1)
    return dx + dy


BATCHED_LABEL_TASKS: dict[str, TaskBuilder] = {"soft": _soft_task, "idlg": _idlg_task}
BATCHED_OBJECTIVES: dict[str, BatchedObjective] = {"l2": _l2, "cosine": _cosine}
BATCHED_REGULARISERS: dict[str, BatchedRegulariser] = {"tv": _tv}


def _close(kind: str, name: str, batched: torch.Tensor, looped: torch.Tensor) -> None:
    if not torch.allclose(batched, looped, rtol=1e-5, atol=1e-6):
        raise NotImplementedError(
            f"batched {kind} {name!r} does not match the looped one "
            f"(max difference {float((batched - looped).abs().max()):.3g})"
        )


def label_task(
    name: str, tasks: Sequence[LabelTask], num_classes: int, batch: int
) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    """The batched form of label task ``name`` for ``tasks``, checked against their own
    ``LabelTask.loss`` on random logits."""
    if name not in BATCHED_LABEL_TASKS:
        raise NotImplementedError(
            f"no batched form of label task {name!r}; add one to "
            "attacks.batched.forms.BATCHED_LABEL_TASKS"
        )
    fn, consts = BATCHED_LABEL_TASKS[name](tasks)
    probe = torch.randn(len(tasks), batch, num_classes, generator=torch.Generator().manual_seed(7))
    probe = probe.to(tasks[0].labels().device)  # where the tasks' variables and labels live
    with torch.no_grad():
        variables = [
            torch.stack([t.variables[i].detach() for t in tasks])
            for i in range(len(tasks[0].variables))
        ]
        batched = fn(probe, variables, consts)
        looped = torch.stack([t.loss(probe[p], slice(None)).detach() for p, t in enumerate(tasks)])
    _close("label task", name, batched, looped)
    return fn, consts


def objective(name: str, shapes: Sequence[tuple[int, ...]]) -> BatchedObjective:
    """The batched form of objective ``name``, checked on random gradients of ``shapes``."""
    if name not in BATCHED_OBJECTIVES:
        raise NotImplementedError(
            f"no batched form of objective {name!r}; add one to "
            "attacks.batched.forms.BATCHED_OBJECTIVES"
        )
    fn = BATCHED_OBJECTIVES[name]
    gen = torch.Generator().manual_seed(8)
    sim = [torch.randn(2, *s, generator=gen) for s in shapes]
    tgt = [torch.randn(2, *s, generator=gen) for s in shapes]
    batched = fn([g.flatten(1) for g in sim], [t.flatten(1) for t in tgt])
    looped = torch.stack(
        [OBJECTIVES[name]([g[p] for g in sim], [t[p] for t in tgt]) for p in (0, 1)]
    )
    _close("objective", name, batched, looped)
    return fn


def regulariser(name: str, shape: tuple[int, ...]) -> BatchedRegulariser:
    """The batched form of regulariser ``name``, checked on random dummies of ``shape``."""
    if name not in BATCHED_REGULARISERS:
        raise NotImplementedError(
            f"no batched form of regulariser {name!r}; add one to "
            "attacks.batched.forms.BATCHED_REGULARISERS"
        )
    fn = BATCHED_REGULARISERS[name]
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(9))
    _close("regulariser", name, fn(x), torch.stack([REGULARISERS[name](x[p]) for p in (0, 1)]))
    return fn
