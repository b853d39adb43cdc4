"""Shared machinery of optimisation-based gradient inversion (DLG family)."""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.local_update import TaskLoss, simulated_update
from attacks.spike_domain import INITS, THRESHOLDS, binarise, init_dummy, time_major
from attacks.types import Capture, PublicInfo, Reconstruction
from attacks.victim import target_gradients, victim_from_capture

CLAMPS = ("output", "step", "none")
RESTART_SEED_STRIDE = 7919  # restart r draws its dummy from seed + r * stride


@dataclass(frozen=True)
class AttackConfig:
    """Optimisation budget, dummy initialisation and hygiene of an attack.

    Defaults are the published ones (DLG/iDLG: L-BFGS lr 1, 300 steps; the paper's dummy
    init); the spike-domain and hygiene options are off unless set.
    """

    iterations: int = 300  # L-BFGS outer steps (DLG/iDLG code: 300)
    lr: float = 1.0
    # "auto": U(0.45, 0.55) for images, |N(0, sigma)| for events (paper); "randn" is DLG's
    init: str = "auto"
    sigma: float = 0.1  # scale of the |N(0, sigma)| event dummy (paper Eq. 1)
    # Pixel range [0, 1] for images (paper, Table III): "output" clamps the reconstruction;
    # "step" projects after every L-BFGS step, which corrupts L-BFGS's curvature pairs
    # (see README). Event dummies are never clamped (spike intensities).
    clamp: str = "output"
    threshold: str = "none"  # spike binarisation: "post" (Algorithm 1) or "in" (Algorithm 2)
    tau: float = 0.5  # binarisation threshold
    tolerance: float = 0.0  # stop early once the gradient-matching loss is <= tolerance
    diverge_factor: float = 1e8  # loss above factor x initial loss: stop, status "diverged"
    restarts: int = 1  # independent dummies; the lowest final gradient loss wins
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, value, valid in (
            ("init", self.init, INITS),
            ("clamp", self.clamp, CLAMPS),
            ("threshold", self.threshold, THRESHOLDS),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if self.sigma <= 0 or self.lr <= 0 or self.tolerance < 0 or self.diverge_factor <= 1:
            raise ValueError(
                "need sigma > 0, lr > 0, tolerance >= 0, diverge_factor > 1; got "
                f"sigma={self.sigma}, lr={self.lr}, tolerance={self.tolerance}, "
                f"diverge_factor={self.diverge_factor}"
            )


def gradient_distance(
    dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]
) -> torch.Tensor:
    """DLG's loss: sum over layers of the squared l2 distance of gradients."""
    return sum(((d - t) ** 2).sum() for d, t in zip(dummy, target, strict=True))  # type: ignore[return-value]


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft label, averaged over the batch (DLG's criterion)."""
    return torch.mean(torch.sum(-target_probs * F.log_softmax(logits, dim=-1), dim=-1))


def scored_output(dummy: torch.Tensor, public: PublicInfo, clamp: str) -> torch.Tensor:
    """What is scored: event frames as they are; images (mean over T for spiking victims)
    clamped to [0, 1] unless clamping is off."""
    if public.input_kind == "events":
        return dummy
    images = dummy.mean(0) if time_major(public) else dummy
    return images if clamp == "none" else images.clamp(0, 1)


def capture_generator(seed: int, capture: Capture) -> torch.Generator:
    """Seeded per capture, so reruns and the ANN/SNN arms draw the same dummies."""
    return torch.Generator().manual_seed(seed * 1_000_003 + capture.round * 10_007 + capture.client)


@dataclass(frozen=True)
class LabelTask:
    """An attack's handling of the label: extra variables optimised with the dummy input,
    the task loss of the victim's logits on the dummy, and the labels it recovers."""

    variables: list[torch.Tensor]
    loss: TaskLoss  # (logits of some rows of the dummy batch, those rows) -> loss
    labels: Callable[[], torch.Tensor]


class GradientMatchingAttack(ABC):
    """Optimise a dummy input (and maybe label) so the update it produces - FedSGD's
    gradient, or FedAvg's unrolled local steps - matches the captured one."""

    name = "gradient-matching"

    def __init__(self, config: AttackConfig | None = None) -> None:
        self.config = config or AttackConfig()

    @abstractmethod
    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        """How this attack handles the unknown label."""

    def reconstruct(self, capture: Capture) -> Reconstruction:
        """Run ``restarts`` independent attacks; keep the lowest final gradient loss."""
        start = time.perf_counter()
        best: Reconstruction | None = None
        for restart in range(self.config.restarts):
            rec = self.attempt(capture, restart)
            if best is None or better(rec, best):
                best = rec
        assert best is not None
        return dataclasses.replace(best, seconds=time.perf_counter() - start)

    def attempt(self, capture: Capture, restart: int = 0) -> Reconstruction:
        """One optimisation from one seeded dummy."""
        start = time.perf_counter()
        cfg, pub = self.config, capture.public
        model = victim_from_capture(capture)
        params = [p.requires_grad_(True) for p in model.parameters()]
        target = target_gradients(model, capture)
        gen = capture_generator(cfg.seed + restart * RESTART_SEED_STRIDE, capture)
        dummy = init_dummy(pub, cfg.init, cfg.sigma, gen).requires_grad_(True)
        task = self.label_task(model, capture, gen)

        def matching_loss() -> torch.Tensor:
            update = simulated_update(model, params, dummy, task.loss, pub, create_graph=True)
            return gradient_distance(update, target)

        status, steps = lbfgs(
            [dummy, *task.variables],
            matching_loss,
            cfg.iterations,
            cfg.lr,
            project=step_projection(dummy, cfg, pub),
            tolerance=cfg.tolerance,
            diverge_factor=cfg.diverge_factor,
        )
        if cfg.threshold == "post":  # Algorithm 1
            with torch.no_grad():
                dummy.copy_(binarise(dummy, cfg.tau))
        with torch.enable_grad():
            final = float(matching_loss().detach())
        rec = dummy.detach()
        return Reconstruction(
            images=scored_output(rec, pub, cfg.clamp),
            labels=task.labels().detach(),
            grad_loss=final,
            status=status,
            iterations=steps,
            seconds=time.perf_counter() - start,
            dummy=rec if time_major(pub) else None,
        )


def better(a: Reconstruction, b: Reconstruction) -> bool:
    """Is ``a`` a better restart than ``b``: finite and lower final gradient loss."""
    if not math.isfinite(a.grad_loss):
        return False
    return not math.isfinite(b.grad_loss) or a.grad_loss < b.grad_loss


def step_projection(
    dummy: torch.Tensor, cfg: AttackConfig, public: PublicInfo
) -> Callable[[], object] | None:
    """What to apply after every optimiser step: Algorithm 2's binarisation, or the
    [0, 1] projection of images under ``clamp="step"``; nothing by default."""
    if cfg.threshold == "in":
        return lambda: dummy.data.copy_(binarise(dummy.data, cfg.tau))
    if cfg.clamp == "step" and public.input_kind == "image":
        return lambda: dummy.data.clamp_(0, 1)
    return None


def lbfgs(
    variables: list[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    iterations: int,
    lr: float,
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
) -> tuple[str, int]:
    """PyTorch L-BFGS with its defaults, as DLG/iDLG run it, one ``step`` per iteration,
    plus hygiene: a non-finite loss or iterate, or a loss above ``diverge_factor`` x the
    initial loss, restores the previous iterate and stops ("nonfinite" / "diverged"); a loss
    at or below ``tolerance`` stops early ("converged"). Returns (status, steps taken)."""
    opt = torch.optim.LBFGS(variables, lr=lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        for v, g in zip(variables, torch.autograd.grad(loss, variables), strict=True):
            v.grad = g
        return loss

    def restore(status: str, step: int) -> tuple[str, int]:
        with torch.no_grad():
            for v, s in zip(variables, saved, strict=True):
                v.copy_(s)
        return status, step

    saved = [v.detach().clone() for v in variables]
    initial = math.nan
    for step in range(1, iterations + 1):
        loss = float(opt.step(closure).detach())  # the loss at the start of this step
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
