"""GRNN's LeNet-5 victim (Ren et al. 2022), as their code (``Backbone/lenet.py``) defines it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.lenet import uniform_init_


def lenet5_geometry(input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """conv1's padding and the features entering fc1.

    GRNN's code runs on 32x32 inputs with unpadded convolutions (16*5*5 = 400 features);
    inputs smaller than 32 (28x28 MNIST) get conv1 padding 2 as in the classic LeNet-5,
    which gives the same 400 features at 28x28.
    """
    _, h, w = input_shape
    pad = 2 if min(h, w) < 32 else 0

    def side(n: int) -> int:  # conv 5 (padding pad) -> pool 2 -> conv 5 -> pool 2
        return ((n + 2 * pad - 4) // 2 - 4) // 2

    if side(h) < 1 or side(w) < 1:
        raise ValueError(f"input {h}x{w} is too small for LeNet-5")
    return pad, 16 * side(h) * side(w)


class LeNet5Victim(nn.Module):
    """Conv(C,6,5)-Sigmoid-MaxPool(2)-Conv(6,16,5)-Sigmoid-MaxPool(2)-Linear(.,120)-Sigmoid-
    Linear(120,84)-Sigmoid-Linear(84,classes), parameter names as in GRNN's code.

    Init: GRNN's ``GRNN.py`` re-initialises the victim with ``net.apply(weights_init)``,
    every weight and bias ~ U(-0.5, 0.5) (DLG's rule), so we do the same.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        pad, flat = lenet5_geometry(input_shape)
        self.conv1 = nn.Conv2d(input_shape[0], 6, kernel_size=5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        uniform_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.sigmoid(self.conv1(x)), 2)
        x = F.max_pool2d(torch.sigmoid(self.conv2(x)), 2)
        x = torch.sigmoid(self.fc1(x.flatten(1)))
        x = torch.sigmoid(self.fc2(x))
        return self.fc3(x)
