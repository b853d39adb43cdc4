"""The optimisers of ``attacks.components.optimisers`` on P problems at once, and their loop
with the same hygiene per problem (:func:`optimise`).

- ``lbfgs``: :class:`attacks.batched.lbfgs.BatchedLBFGS` (torch's L-BFGS per problem: its
  line-search-free steps couple nothing, but its history, step size and break conditions
  must be per problem).
- ``adam`` / ``signed-adam``: Adam is elementwise, so ``torch.optim.Adam`` on the whole
  ``[P, n]`` matrix is per-problem Adam; rows of stopped problems get a zero gradient and are
  put back after the step (their moments are never used again).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

from attacks.batched.lbfgs import BatchedLBFGS, Closure
from attacks.components.optimisers import SCHEDULES


class BatchedStepper(Protocol):
    def step(self, closure: Closure, active: torch.Tensor) -> torch.Tensor:
        """One step of every active problem; returns each one's loss at the start of its
        step (float64, NaN for inactive problems)."""

    def set_lr(self, lr: float) -> None: ...


class LBFGSStepper:
    def __init__(self, x: torch.Tensor, lr: float) -> None:
        self.opt = BatchedLBFGS(x, lr=lr)

    def step(self, closure: Closure, active: torch.Tensor) -> torch.Tensor:
        return self.opt.step(closure, active)

    def set_lr(self, lr: float) -> None:
        self.opt.lr = lr


class AdamStepper:
    def __init__(self, x: torch.Tensor, lr: float, signed: bool = False) -> None:
        self.x, self.signed = x, signed
        self.opt = torch.optim.Adam([x], lr=lr)

    def step(self, closure: Closure, active: torch.Tensor) -> torch.Tensor:
        x = self.x
        loss = torch.full((x.shape[0],), math.nan, dtype=torch.float64, device=x.device)
        rows = active.nonzero().view(-1)
        with torch.enable_grad():
            value, g = closure(rows, x[rows])
        loss[rows] = value.detach().to(torch.float64)
        grad = torch.zeros_like(x)
        grad[rows] = g.sign() if self.signed else g
        stopped = ~active
        kept = x[stopped]
        x.grad = grad
        self.opt.step()
        x.grad = None
        x[stopped] = kept
        return loss

    def set_lr(self, lr: float) -> None:
        self.opt.param_groups[0]["lr"] = lr


def signed_adam(x: torch.Tensor, lr: float) -> AdamStepper:
    return AdamStepper(x, lr, signed=True)


BATCHED_OPTIMISERS: dict[str, Callable[[torch.Tensor, float], BatchedStepper]] = {
    "lbfgs": LBFGSStepper,
    "adam": AdamStepper,
    "signed-adam": signed_adam,
}


def optimise(
    optimiser: str,
    x: torch.Tensor,
    closure: Closure,
    iterations: int,
    lr: float,
    schedule: str = "none",
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
    before_step: Callable[[int, int], object] | None = None,
) -> tuple[list[str], list[int]]:
    """``attacks.components.optimisers.optimise`` applied to each row of ``x`` ([P, n], in
    place), ``before_step(step, iterations)`` before each step as there.

    ``iterations`` steps per problem; after each, ``project`` (which acts on all of ``x``;
    rows already stopped are put back), then per problem: a non-finite step loss or iterate,
    or a loss above ``diverge_factor`` x its step-1 loss, restores the previous iterate and
    stops it ("nonfinite"/"diverged"); a loss at or below ``tolerance`` stops it
    ("converged"). Returns per-problem status and steps taken.
    """
    if optimiser not in BATCHED_OPTIMISERS:
        raise NotImplementedError(
            f"no batched form of optimiser {optimiser!r}; add one to "
            "attacks.batched.optimisers.BATCHED_OPTIMISERS"
        )
    P = x.shape[0]
    stepper = BATCHED_OPTIMISERS[optimiser](x, lr)
    factor = SCHEDULES[schedule]
    alive = torch.ones(P, dtype=torch.bool, device=x.device)
    status, steps = ["ok"] * P, [iterations] * P
    saved = x.clone()
    initial = torch.full((P,), math.nan, dtype=torch.float64, device=x.device)
    for step in range(1, iterations + 1):
        if not bool(alive.any()):
            break
        if schedule != "none":
            stepper.set_lr(lr * factor(step, iterations))
        if before_step is not None:
            before_step(step, iterations)
        loss = stepper.step(closure, alive)
        if project is not None:
            stopped = ~alive
            kept = x[stopped]
            project()
            x[stopped] = kept
        if step == 1:
            initial = loss.clone()
        finite = torch.isfinite(loss) & torch.isfinite(x).all(dim=1)
        outcomes = (
            ("nonfinite", alive & ~finite, True),
            ("diverged", alive & finite & (loss > diverge_factor * initial), True),
            (
                "converged",
                alive & finite & ~(loss > diverge_factor * initial) & (loss <= tolerance),
                False,
            ),
        )
        for name, hit, restore in outcomes:
            if not bool(hit.any()):
                continue
            if restore:
                x[hit] = saved[hit]
            for p in hit.nonzero().view(-1).tolist():
                status[p], steps[p] = name, step
            alive &= ~hit
        saved[alive] = x[alive]
    return status, steps


def batched_lbfgs_attack(
    x: torch.Tensor,
    closure: Closure,
    iterations: int,
    lr: float,
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
) -> tuple[list[str], list[int]]:
    """:func:`optimise` with the batched L-BFGS (``attacks.components.optimisers.lbfgs``
    per row)."""
    return optimise("lbfgs", x, closure, iterations, lr, "none", project, tolerance, diverge_factor)
