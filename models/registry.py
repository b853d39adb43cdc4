"""Models by name: victims of the attacks (per family and arm) and judges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from models.dvs_gesture_snn import DVSGestureSNN
from models.judge import LeNet5
from models.lenet import LeNet
from models.lenet5_victim import LeNet5Victim
from models.resnet_arcface import ResNetArcFace
from models.snn_lenet import SNNLeNet
from models.snn_lenet5 import SNNLeNet5

MODELS: dict[str, type[nn.Module]] = {
    "lenet": LeNet,
    "snn-lenet": SNNLeNet,
    "lenet5": LeNet5,  # the judge (ReLU LeNet-5), not a victim
    "lenet5-grnn": LeNet5Victim,
    "snn-lenet5": SNNLeNet5,
    "resnet50-arcface": ResNetArcFace,  # LFW's judge
    "dvs-gesture-snn": DVSGestureSNN,  # DVS128 Gesture's judge (spiking, but not a victim)
}

# Spiking victims, built with ``T`` and ``neuron``; the spiking judge dvs-gesture-snn is not
# one (it takes event frames with their own T and always uses LIF neurons).
SPIKING: frozenset[str] = frozenset({"snn-lenet", "snn-lenet5"})

JUDGES: frozenset[str] = frozenset({"lenet5", "resnet50-arcface", "dvs-gesture-snn"})
"""Models that serve as a dataset's judge (see :func:`fl_sim.data.registry.judge_arch`)."""

# Victim families: the same layers as an ANN ("ann" arm) and as an SNN twin ("snn" arm).
VICTIMS: dict[str, dict[str, str]] = {
    "lenet": {"ann": "lenet", "snn": "snn-lenet"},  # DLG/iDLG's LeNet
    "lenet5": {"ann": "lenet5-grnn", "snn": "snn-lenet5"},  # GRNN's LeNet-5
}

# An FL "arm" is the victim architecture a federation trains (lenet family by default).
ARMS: dict[str, str] = dict(VICTIMS["lenet"])


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    T: int = 4,
    neuron: str = "if",
    **options: Any,
) -> nn.Module:
    """Instantiate a registered model; ``T`` and ``neuron`` only apply to spiking victims,
    ``options`` are further constructor arguments (e.g. ``width`` of dvs-gesture-snn)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    factory: Callable[..., nn.Module] = MODELS[name]
    if name in SPIKING:
        options = {"T": T, "neuron": neuron, **options}
    return factory(input_shape=input_shape, num_classes=num_classes, **options)


def victim_model_name(family: str, arm: str) -> str:
    """Model name of a victim family's arm, e.g. ("lenet5", "snn") -> "snn-lenet5"."""
    if family not in VICTIMS:
        raise ValueError(f"unknown victim family {family!r}; valid: {', '.join(sorted(VICTIMS))}")
    arms = VICTIMS[family]
    if arm not in arms:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(sorted(arms))}")
    return arms[arm]
