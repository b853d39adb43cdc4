"""Shared machinery of optimisation-based gradient inversion (DLG family)."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.types import Capture, Reconstruction
from attacks.victim import is_spiking, target_gradients, victim_from_capture

INITS = ("uniform-gray", "randn")
CLAMPS = ("output", "step", "none")


@dataclass(frozen=True)
class AttackConfig:
    """Optimisation budget and dummy initialisation of an attack (published defaults)."""

    iterations: int = 300  # L-BFGS outer steps (DLG/iDLG code: 300)
    lr: float = 1.0
    init: str = "uniform-gray"  # the paper's U(0.45, 0.55); "randn" is DLG's original
    # Pixel range [0, 1] (paper, Table III): "output" clamps the reconstruction; "step" projects
    # after every L-BFGS step, which corrupts L-BFGS's curvature pairs (see README).
    clamp: str = "output"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
        if self.clamp not in CLAMPS:
            raise ValueError(f"unknown clamp {self.clamp!r}; valid: {', '.join(CLAMPS)}")


def gradient_distance(
    dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor]
) -> torch.Tensor:
    """DLG's loss: sum over layers of the squared l2 distance of gradients."""
    return sum(((d - t) ** 2).sum() for d, t in zip(dummy, target, strict=True))  # type: ignore[return-value]


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft label, averaged over the batch (DLG's criterion)."""
    return torch.mean(torch.sum(-target_probs * F.log_softmax(logits, dim=-1), dim=-1))


def init_images(shape: tuple[int, ...], init: str, generator: torch.Generator) -> torch.Tensor:
    """Dummy images [B,C,H,W]: U(0.45, 0.55) ("uniform-gray") or N(0, 1) ("randn")."""
    if init == "uniform-gray":
        return 0.45 + 0.1 * torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)


def as_images(dummy: torch.Tensor, clamp: str) -> torch.Tensor:
    """The reconstruction as images; clamped to [0, 1] unless clamping is off."""
    return dummy if clamp == "none" else dummy.clamp(0, 1)


def capture_generator(seed: int, capture: Capture) -> torch.Generator:
    """Seeded per capture, so reruns and the ANN/SNN arms draw the same dummies."""
    return torch.Generator().manual_seed(seed * 1_000_003 + capture.round * 10_007 + capture.client)


@dataclass(frozen=True)
class LabelTask:
    """An attack's handling of the label: extra variables optimised with the dummy input,
    the task loss of the victim's logits on the dummy, and the labels it recovers."""

    variables: list[torch.Tensor]
    loss: Callable[[torch.Tensor], torch.Tensor]
    labels: Callable[[], torch.Tensor]


class GradientMatchingAttack(ABC):
    """Optimise a dummy input (and maybe label) so its gradient matches the captured one."""

    name = "gradient-matching"

    def __init__(self, config: AttackConfig | None = None) -> None:
        self.config = config or AttackConfig()

    @abstractmethod
    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        """How this attack handles the unknown label."""

    def reconstruct(self, capture: Capture) -> Reconstruction:
        start = time.perf_counter()
        model = victim_from_capture(capture)
        params = [p.requires_grad_(True) for p in model.parameters()]
        target = target_gradients(model, capture)
        gen = capture_generator(self.config.seed, capture)
        pub = capture.public
        images = init_images((pub.batch_size, *pub.input_shape), self.config.init, gen)
        if is_spiking(capture):  # the paper's dummy: [T,B,C,H,W], initialised replicated over T
            images = images.unsqueeze(0).repeat(pub.T, 1, 1, 1, 1)
        dummy = images.requires_grad_(True)
        task = self.label_task(model, capture, gen)

        def matching_loss() -> torch.Tensor:
            loss = task.loss(model(dummy))
            grads = torch.autograd.grad(loss, params, create_graph=True)
            return gradient_distance(grads, target)

        status, steps = lbfgs(
            [dummy, *task.variables],
            matching_loss,
            self.config.iterations,
            self.config.lr,
            project=(lambda: dummy.data.clamp_(0, 1)) if self.config.clamp == "step" else None,
        )
        with torch.enable_grad():
            final = float(matching_loss().detach())
        rec = dummy.detach()
        return Reconstruction(
            images=as_images(rec.mean(0) if is_spiking(capture) else rec, self.config.clamp),
            labels=task.labels().detach(),
            grad_loss=final,
            status=status,
            iterations=steps,
            seconds=time.perf_counter() - start,
            dummy=rec if is_spiking(capture) else None,
        )


def lbfgs(
    variables: list[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    iterations: int,
    lr: float,
    project: Callable[[], object] | None = None,
) -> tuple[str, int]:
    """PyTorch L-BFGS with its defaults, as DLG/iDLG run it, plus NaN/Inf protection:
    on a non-finite loss or iterate, restore the last finite iterate and stop."""
    opt = torch.optim.LBFGS(variables, lr=lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        for v, g in zip(variables, torch.autograd.grad(loss, variables), strict=True):
            v.grad = g
        return loss

    saved = [v.detach().clone() for v in variables]
    for step in range(1, iterations + 1):
        loss = opt.step(closure).detach()
        if project is not None:
            project()
        if not math.isfinite(float(loss)) or not all(torch.isfinite(v).all() for v in variables):
            with torch.no_grad():
                for v, s in zip(variables, saved, strict=True):
                    v.copy_(s)
            return "nonfinite", step
        saved = [v.detach().clone() for v in variables]
    return "ok", iterations
