"""ANN and spiking LeNets (attack victims), judge models, and a registry by name."""

from models.registry import (
    ARMS,
    JUDGES,
    MODELS,
    SPIKING,
    VICTIMS,
    build_model,
    victim_model_name,
)
from models.surrogate import NEURONS

__all__ = [
    "ARMS",
    "JUDGES",
    "MODELS",
    "NEURONS",
    "SPIKING",
    "VICTIMS",
    "build_model",
    "victim_model_name",
]
