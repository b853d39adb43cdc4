"""Gradient inversion attacks. They see only :class:`attacks.types.Capture`."""

from attacks.gradient_matching import AttackConfig
from attacks.grnn import GRNNConfig
from attacks.registry import ATTACKS, Attack, build_attack
from attacks.types import Capture, PublicInfo, Reconstruction

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "Capture",
    "GRNNConfig",
    "PublicInfo",
    "Reconstruction",
    "build_attack",
]
