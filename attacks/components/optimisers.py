"""How the dummy is fitted: optimisers (name -> :class:`Stepper` factory), step-size schedules
(name -> factor of the base lr per step), and the loop every optimiser runs in, with its
hygiene (:func:`optimise`).

- ``lbfgs``: PyTorch L-BFGS with its defaults, one ``step`` (up to 20 inner iterations) per
  iteration, as DLG/iDLG run it (lr 1).
- ``adam``: torch.optim.Adam with its defaults, one step per iteration.
- ``signed-adam``: Adam fed the sign of the gradient (Inverting Gradients, Geiping et al.
  2020: ``x.grad.sign_()`` before ``optimizer.step()``), for every optimised variable.
- schedules: ``none``; ``ig``: lr x0.1 at 3/8, 5/8 and 7/8 of the iterations (Inverting
  Gradients' MultiStepLR milestones ``N // 2.667, N // 1.6, N // 1.142``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

LossFn = Callable[[], torch.Tensor]


class Stepper(Protocol):
    """One optimiser over a list of variables."""

    def step(self, loss_fn: LossFn) -> float:
        """One optimiser step; returns the loss at its start."""

    def set_lr(self, lr: float) -> None: ...


class LBFGSStepper:
    """``torch.optim.LBFGS(variables, lr=lr)``; one ``step(closure)`` per call."""

    def __init__(self, variables: list[torch.Tensor], lr: float) -> None:
        self.variables = variables
        self.opt = torch.optim.LBFGS(variables, lr=lr)

    def step(self, loss_fn: LossFn) -> float:
        def closure() -> torch.Tensor:
            self.opt.zero_grad()
            loss = loss_fn()
            for v, g in zip(self.variables, torch.autograd.grad(loss, self.variables), strict=True):
                v.grad = g
            return loss

        return float(self.opt.step(closure).detach())  # type: ignore[union-attr]

    def set_lr(self, lr: float) -> None:
        self.opt.param_groups[0]["lr"] = lr


class AdamStepper:
    """``torch.optim.Adam(variables, lr=lr)``, optionally on the sign of the gradient."""

    def __init__(self, variables: list[torch.Tensor], lr: float, signed: bool = False) -> None:
        self.variables, self.signed = variables, signed
        self.opt = torch.optim.Adam(variables, lr=lr)

    def step(self, loss_fn: LossFn) -> float:
        loss = loss_fn()
        for v, g in zip(self.variables, torch.autograd.grad(loss, self.variables), strict=True):
            v.grad = g.sign() if self.signed else g
        self.opt.step()
        return float(loss.detach())

    def set_lr(self, lr: float) -> None:
        self.opt.param_groups[0]["lr"] = lr


def signed_adam(variables: list[torch.Tensor], lr: float) -> AdamStepper:
    return AdamStepper(variables, lr, signed=True)


OPTIMISERS: dict[str, Callable[[list[torch.Tensor], float], Stepper]] = {
    "lbfgs": LBFGSStepper,
    "adam": AdamStepper,
    "signed-adam": signed_adam,
}


def ig_schedule(step: int, iterations: int) -> float:
    """Factor of the base lr at ``step`` (1-based) under Inverting Gradients' MultiStepLR:
    x0.1 for each milestone ``N // 2.667, N // 1.6, N // 1.142`` reached; the scheduler
    counts 0 at its construction and one more after every optimiser step, so step i+1 runs
    with the milestones <= i applied."""
    milestones = (iterations // 2.667, iterations // 1.6, iterations // 1.142)
    return 0.1 ** sum(m <= step - 1 for m in milestones)


SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "none": lambda step, iterations: 1.0,
    "ig": ig_schedule,
}


def optimise(
    optimiser: str,
    variables: list[torch.Tensor],
    loss_fn: LossFn,
    iterations: int,
    lr: float,
    schedule: str = "none",
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
    before_step: Callable[[int, int], object] | None = None,
) -> tuple[str, int]:
    """``iterations`` steps of ``optimiser`` at ``lr`` x ``schedule``, each preceded by
    ``before_step(step, iterations)`` (e.g. surrogate annealing) and followed by
    ``project``, with hygiene: a non-finite loss or iterate, or a loss above
    ``diverge_factor`` x the initial loss, restores the previous iterate and stops
    ("nonfinite" / "diverged"); a loss at or below ``tolerance`` stops early ("converged").
    The loss checked is the one at the start of each step. Returns (status, steps taken)."""
    stepper = OPTIMISERS[optimiser](variables, lr)
    factor = SCHEDULES[schedule]

    def restore(status: str, step: int) -> tuple[str, int]:
        with torch.no_grad():
            for v, s in zip(variables, saved, strict=True):
                v.copy_(s)
        return status, step

    saved = [v.detach().clone() for v in variables]
    initial = math.nan
    for step in range(1, iterations + 1):
        if schedule != "none":
            stepper.set_lr(lr * factor(step, iterations))
        if before_step is not None:
            before_step(step, iterations)
        loss = stepper.step(loss_fn)  # the loss at the start of this step
        if project is not None:
            project()
        if step == 1:
            initial = loss
        if not math.isfinite(loss) or not all(torch.isfinite(v).all() for v in variables):
            return restore("nonfinite", step)
        if loss > diverge_factor * initial:
            return restore("diverged", step)
        if loss <= tolerance:
            return "converged", step
        saved = [v.detach().clone() for v in variables]
    return "ok", iterations


def lbfgs(
    variables: list[torch.Tensor],
    loss_fn: LossFn,
    iterations: int,
    lr: float,
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
) -> tuple[str, int]:
    """:func:`optimise` with PyTorch L-BFGS, as DLG/iDLG run it."""
    return optimise(
        "lbfgs", variables, loss_fn, iterations, lr, "none", project, tolerance, diverge_factor
    )
