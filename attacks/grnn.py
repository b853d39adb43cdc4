"""GRNN (Ren et al. 2022): a generator, not the dummy itself, is fitted to the captured gradient.

Faithful to the authors' public code (repository Rand2AI/GRNN: ``GRNN.py``, ``Generator/model.py``,
``utils.py``):

- Input: B fixed N(0, 1) noise vectors of size 128, one per image of the batch (their
  ``G_ran_in = randn(batchsize, g_in)``), drawn from :func:`capture_generator`.
- Label branch: Linear(128, classes) + softmax. Image branch: ConvTranspose2d(128, ., 4) + GLU
  to a 4x4 map, then up-blocks (nearest 2x upsampling, 3x3 conv, BatchNorm, GLU) with widths
  32 * 2^k, and a sigmoid. Their generator only makes power-of-two squares; we generate the
  smallest power-of-two square covering H and W (32 for 28x28) and centre-crop to H x W.
- Generator init: their ``weight_init(0, 0.02)`` only visits top-level containers, so it never
  touches a layer; the generator keeps PyTorch's default init, and so does ours.
- Loss: ``d2 + sqrt(d2) + tv_weight * TV(image)`` with ``d2`` the squared l2 distance of the
  flattened gradients. Their "Wasserstein distance" (``WassersteinDistance/wd.py``) reduces to
  ``sqrt(d2)``, the l2 norm of the gradient difference. TV is their ``TVLoss``; tv_weight 1e-3
  is their LeNet value. The victim's task loss is cross-entropy against the soft label.
- RMSprop(lr 1e-4, momentum 0.99), 1000 iterations, BatchNorm in training mode (as theirs).

For spiking victims the generated image [B,C,H,W] is replicated over T by the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from attacks.gradient_matching import (
    AttackConfig,
    capture_generator,
    gradient_distance,
    soft_cross_entropy,
)
from attacks.local_update import simulated_update
from attacks.types import Capture, Reconstruction
from attacks.victim import is_spiking, target_gradients, victim_from_capture

NOISE_DIM = 128  # GRNN's g_in
WIDTH = 32  # GRNN's d: channels of the last up-block


@dataclass(frozen=True)
class GRNNConfig:
    """GRNN's published optimisation settings (LeNet values)."""

    iterations: int = 1000
    lr: float = 1e-4
    momentum: float = 0.99
    tv_weight: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.tv_weight < 0:
            raise ValueError(f"tv_weight must be >= 0, got {self.tv_weight}")

    @classmethod
    def from_attack_config(cls, config: AttackConfig) -> GRNNConfig:
        """Take the shared budget (``iterations``) and ``seed``; lr, init and clamp of the
        L-BFGS attacks do not apply to GRNN and keep GRNN's own values."""
        return cls(iterations=config.iterations, seed=config.seed)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the resolution: nearest upsampling, 3x3 conv, BatchNorm, GLU (halves channels)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, 2 * out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(2 * out_channels),
        nn.GLU(dim=1),
    )


class GRNNGenerator(nn.Module):
    """Noise [B,128] -> (images [B,C,H,W] in [0,1], soft labels [B,classes])."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, h, w = input_shape
        self.height, self.width = h, w
        side = max(8, 2 ** math.ceil(math.log2(max(h, w))))
        blocks = int(math.log2(side)) - 3  # 4x4 -> side/2 in `blocks` up-blocks, then output
        self.label = nn.Linear(NOISE_DIM, num_classes)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(NOISE_DIM, 2 * WIDTH * 2**blocks, kernel_size=4), nn.GLU(dim=1)
        )
        self.ups = nn.Sequential(
            *(up_block(WIDTH * 2 ** (k + 1), WIDTH * 2**k) for k in reversed(range(blocks)))
        )
        self.out = up_block(WIDTH, channels)

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(self.label(noise), dim=-1)
        x = torch.sigmoid(self.out(self.ups(self.stem(noise[:, :, None, None]))))
        top = (x.shape[2] - self.height) // 2
        left = (x.shape[3] - self.width) // 2
        return x[:, :, top : top + self.height, left : left + self.width], probs


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """GRNN's TVLoss: 2 * (mean squared vertical + horizontal differences) / batch size."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() / x[0, :, 1:, :].numel()
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum() / x[0, :, :, 1:].numel()
    return 2 * (dh + dw) / x.shape[0]


def seeded_generator(capture: Capture, seed: int) -> tuple[GRNNGenerator, torch.Tensor]:
    """The untrained generator and its fixed noise [B,128], both drawn from the capture's
    seeded generator: reruns and the ANN/SNN arms start identically, whatever the global RNG
    (the generator's init runs under a forked, reseeded global RNG)."""
    pub = capture.public
    gen = capture_generator(seed, capture)
    noise = torch.randn(pub.samples, NOISE_DIM, generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
        generator = GRNNGenerator(pub.input_shape, pub.num_classes)
    return generator.to(capture.device), noise.to(capture.device)


Output = tuple[torch.Tensor, torch.Tensor, float]  # images, soft labels, d2


def fit_generator(
    generator: GRNNGenerator,
    noise: torch.Tensor,
    distance: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor],
    cfg: GRNNConfig,
) -> tuple[str, int, Output]:
    """GRNN's loop: RMSprop on ``d2 + sqrt(d2) + tv_weight * TV``. Returns the status, the
    optimiser steps taken and the final output; on a NaN/Inf loss, the last finite one."""
    weights = list(generator.parameters())
    opt = torch.optim.RMSprop(weights, lr=cfg.lr, momentum=cfg.momentum)
    kept: Output | None = None
    for step in range(cfg.iterations):
        images, probs = generator(noise)
        d2 = distance(images, probs, True)
        total = d2 + torch.sqrt(d2) + cfg.tv_weight * tv_loss(images)
        if not math.isfinite(float(total.detach())):
            if kept is None:  # not even the initial output has a finite loss: report it
                kept = (images.detach().nan_to_num(0.5), probs.detach(), float(d2.detach()))
            return "nonfinite", step, kept
        kept = (images.detach(), probs.detach(), float(d2.detach()))
        for w, g in zip(weights, torch.autograd.grad(total, weights), strict=True):
            w.grad = g
        opt.step()
    with torch.no_grad():  # the output of the final generator
        images, probs = generator(noise)
    d2 = distance(images, probs, False).detach()
    if not (math.isfinite(float(d2)) and bool(torch.isfinite(images).all())):
        assert kept is not None  # iterations >= 1
        return "nonfinite", cfg.iterations, kept
    return "ok", cfg.iterations, (images, probs, float(d2))


class GRNN:
    """Fit a generator so the victim's gradient on its output matches the captured one.

    ``grad_loss`` is the squared gradient distance ``d2`` of the returned output (the same
    quantity DLG reports); ``iterations`` counts optimiser steps taken. On a NaN/Inf loss the
    attack stops and returns the last output whose loss was finite, with status "nonfinite".
    """

    name = "grnn"

    def __init__(self, config: GRNNConfig | AttackConfig | None = None) -> None:
        if isinstance(config, AttackConfig):
            config = GRNNConfig.from_attack_config(config)
        self.config = config or GRNNConfig()

    def reconstruct(self, capture: Capture) -> Reconstruction:
        start = time.perf_counter()
        model = victim_from_capture(capture)
        params = [p.requires_grad_(True) for p in model.parameters()]
        target = target_gradients(model, capture)

        def distance(images: torch.Tensor, probs: torch.Tensor, graph: bool) -> torch.Tensor:
            def task_loss(logits: torch.Tensor, rows: slice) -> torch.Tensor:
                return soft_cross_entropy(logits, probs[rows])  # SNNs replicate images over T

            update = simulated_update(model, params, images, task_loss, capture.public, graph)
            return gradient_distance(update, target)

        generator, noise = seeded_generator(capture, self.config.seed)
        status, steps, (images, probs, d2) = fit_generator(generator, noise, distance, self.config)
        T = capture.public.T
        return Reconstruction(
            images=images,
            labels=probs.argmax(dim=-1),
            grad_loss=d2,
            status=status,
            iterations=steps,
            seconds=time.perf_counter() - start,
            dummy=images.unsqueeze(0).repeat(T, 1, 1, 1, 1) if is_spiking(capture) else None,
        )
