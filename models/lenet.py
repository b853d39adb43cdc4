"""The LeNet of DLG (Zhu et al. 2019) and iDLG (Zhao et al. 2020), as their code defines it."""

from __future__ import annotations

import torch
from torch import nn


def lenet_hidden_size(input_shape: tuple[int, int, int]) -> int:
    """Features entering the classifier: 12 channels at H/4 x W/4 (two stride-2 convs)."""
    _, h, w = input_shape

    def halved(n: int) -> int:  # kernel 5, padding 2, stride 2
        return (n - 1) // 2 + 1

    return 12 * halved(halved(h)) * halved(halved(w))


def conv_stack(channels: int) -> list[nn.Module]:
    """The three 5x5 convolutions of the DLG LeNet (activations are inserted by the caller)."""
    return [
        nn.Conv2d(channels, 12, kernel_size=5, padding=2, stride=2),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
    ]


def uniform_init_(model: nn.Module, bound: float = 0.5) -> nn.Module:
    """DLG's ``weights_init``: every weight and bias ~ U(-bound, bound)."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-bound, bound)
    return model


class LeNet(nn.Module):
    """Conv(C,12,5,s2)-Sigmoid-Conv(12,12,5,s2)-Sigmoid-Conv(12,12,5,s1)-Sigmoid-Linear."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        c1, c2, c3 = conv_stack(input_shape[0])
        self.body = nn.Sequential(c1, nn.Sigmoid(), c2, nn.Sigmoid(), c3, nn.Sigmoid())
        self.fc = nn.Linear(lenet_hidden_size(input_shape), num_classes)
        uniform_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))
