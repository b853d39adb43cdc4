"""Models by name: victims of the attacks (per arm) and judges."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.judge import LeNet5
from models.lenet import LeNet
from models.snn_lenet import SNNLeNet

MODELS: dict[str, type[nn.Module]] = {"lenet": LeNet, "snn-lenet": SNNLeNet, "lenet5": LeNet5}

# An FL "arm" is the victim architecture family a federation trains.
ARMS: dict[str, str] = {"ann": "lenet", "snn": "snn-lenet"}

SPIKING: frozenset[str] = frozenset({"snn-lenet"})


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, T: int = 4
) -> nn.Module:
    """Instantiate a registered model; ``T`` only applies to spiking models."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    factory: Callable[..., nn.Module] = MODELS[name]
    if name in SPIKING:
        return factory(input_shape=input_shape, num_classes=num_classes, T=T)
    return factory(input_shape=input_shape, num_classes=num_classes)


def arm_model_name(arm: str) -> str:
    """Victim model name of an arm ("ann" or "snn")."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(sorted(ARMS))}")
    return ARMS[arm]
