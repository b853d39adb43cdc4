"""Spiking twin of GRNN's LeNet-5 victim, built with SpikingJelly multi-step neurons."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import nn

from models.lenet import uniform_init_
from models.lenet5_victim import lenet5_geometry
from models.snn_lenet import SpikingVictim
from models.surrogate import make_neuron


class SNNLeNet5(SpikingVictim):
    """Same layers and parameter names as :class:`models.lenet5_victim.LeNet5Victim`, with
    IF or LIF neurons in place of the sigmoids (max-pooling acts on spikes). Input
    [T,B,C,H,W] (or [B,C,H,W], replicated over T); logits are the mean over T of fc3's output.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        T: int = 4,
        neuron: str = "if",
        surrogate: nn.Module | None = None,
    ) -> None:
        super().__init__(T, neuron)
        pad, flat = lenet5_geometry(input_shape)
        self.conv1 = layer.Conv2d(input_shape[0], 6, kernel_size=5, padding=pad, step_mode="m")
        self.sn1 = make_neuron(neuron, surrogate)
        self.pool1 = layer.MaxPool2d(2, step_mode="m")
        self.conv2 = layer.Conv2d(6, 16, kernel_size=5, step_mode="m")
        self.sn2 = make_neuron(neuron, surrogate)
        self.pool2 = layer.MaxPool2d(2, step_mode="m")
        self.flatten = layer.Flatten(step_mode="m")
        self.fc1 = layer.Linear(flat, 120, step_mode="m")
        self.sn3 = make_neuron(neuron, surrogate)
        self.fc2 = layer.Linear(120, 84, step_mode="m")
        self.sn4 = make_neuron(neuron, surrogate)
        self.fc3 = layer.Linear(84, num_classes, step_mode="m")
        uniform_init_(self)  # as the ANN twin (GRNN's weights_init)

    def step_outputs(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.sn1(self.conv1(x)))
        x = self.pool2(self.sn2(self.conv2(x)))
        x = self.sn3(self.fc1(self.flatten(x)))
        x = self.sn4(self.fc2(x))
        return self.fc3(x)
