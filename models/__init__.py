"""ANN and spiking LeNets (attack victims), judge models, and a registry by name."""

from models.registry import ARMS, MODELS, SPIKING, arm_model_name, build_model

__all__ = ["ARMS", "MODELS", "SPIKING", "arm_model_name", "build_model"]
