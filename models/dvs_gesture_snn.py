"""DVSGestureSNN: the paper's residual spiking judge for DVS128 Gesture (its Table I)."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

from models.surrogate import make_neuron


def lif() -> nn.Module:
    """Multi-step LIF (tau 2, detached reset) with SpikingJelly's ATan surrogate, as in Table I."""
    return make_neuron("lif", sj_surrogate.ATan())


def conv_bn_lif(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Conv2d(3x3, pad 1) -> BN -> LIF(ATan), all multi-step."""
    return nn.Sequential(
        layer.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(c_out, step_mode="m"),
        lif(),
    )


class ResidualBlock(nn.Module):
    """Spiking ResNet basic block: LIF(BN(conv3x3(LIF(BN(conv3x3(x))))) + x).

    Table I names ResidualBlock(c) without defining it; this is the standard "Spiking ResNet"
    block of Fang et al. 2021 ("Deep residual learning in spiking neural networks", NeurIPS,
    the paper's [24], their Fig. 1b): the identity is added before the last neuron.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_lif(channels, channels, 1)
        self.conv2 = layer.Conv2d(channels, channels, 3, padding=1, bias=False, step_mode="m")
        self.bn2 = layer.BatchNorm2d(channels, step_mode="m")
        self.out = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.bn2(self.conv2(self.conv1(x))) + x)


class DVSGestureSNN(nn.Module):
    """Table I: Conv-BN-LIF blocks of widths w, 2w, 4w, 8w (w = ``width``, 64 in the paper;
    the last three with stride 2 and a ResidualBlock), global average pooling, Linear(8w,
    classes), logits averaged over time. Input: time-major spike frames [T,B,C,H,W]."""

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (2, 128, 128),
        num_classes: int = 11,
        width: int = 64,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = input_shape[0]
        self.width = width
        w = width
        self.features = nn.Sequential(
            conv_bn_lif(self.in_channels, w, 1),
            conv_bn_lif(w, 2 * w, 2),
            ResidualBlock(2 * w),
            conv_bn_lif(2 * w, 4 * w, 2),
            ResidualBlock(4 * w),
            conv_bn_lif(4 * w, 8 * w, 2),
            ResidualBlock(8 * w),
        )
        self.classifier = layer.Linear(8 * w, num_classes, step_mode="m")

    def step_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier output at every step [T,B,classes] (state must be reset before)."""
        return self.classifier(self.features(x).mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Time-averaged logits [B, classes] of spike frames [T,B,C,H,W]; state reset first."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"expected time-major frames [T, B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        functional.reset_net(self)  # neuron state must not leak between forwards
        return self.step_outputs(x).mean(0)
