"""Spiking twin of the DLG LeNet, built with SpikingJelly (multi-step IF or LIF neurons, ATan)."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from models.lenet import lenet_hidden_size, uniform_init_
from models.surrogate import check_neuron, make_neuron


def encode_repeat(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding: replicate a static batch [B,C,H,W] over T steps -> [T,B,C,H,W]."""
    return x.unsqueeze(0).expand(T, *x.shape)


class SpikingVictim(nn.Module):
    """What the SNN twins share: T steps, static input replicated over T, neuron state reset
    before every forward, logits = mean over T of the last layer's output."""

    def __init__(self, T: int, neuron: str) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        check_neuron(neuron)
        self.T = T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = encode_repeat(x, self.T)
        functional.reset_net(self)  # neuron state must not leak between forwards
        return self.step_outputs(x).mean(0)

    def step_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Last layer's output at every step: [T,B,classes] from [T,B,C,H,W]."""
        raise NotImplementedError


class SNNLeNet(SpikingVictim):
    """Same convolutions and classifier as :class:`models.lenet.LeNet`, with IF or LIF
    neurons (``neuron="if"``/``"lif"``) in place of the sigmoids. Input [T,B,C,H,W] (or
    [B,C,H,W], replicated over T); logits are the mean over T of the last layer's output
    (its membrane input)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        T: int = 4,
        neuron: str = "if",
        surrogate: nn.Module | None = None,
    ) -> None:
        super().__init__(T, neuron)
        c = input_shape[0]

        def spiking() -> nn.Module:
            return make_neuron(neuron, surrogate)

        self.body = nn.Sequential(
            layer.Conv2d(c, 12, kernel_size=5, padding=2, stride=2, step_mode="m"),
            spiking(),
            layer.Conv2d(12, 12, kernel_size=5, padding=2, stride=2, step_mode="m"),
            spiking(),
            layer.Conv2d(12, 12, kernel_size=5, padding=2, stride=1, step_mode="m"),
            spiking(),
            layer.Flatten(step_mode="m"),
        )
        self.fc = layer.Linear(lenet_hidden_size(input_shape), num_classes, step_mode="m")
        uniform_init_(self)

    def step_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))
