"""Gradient inversion attacks. They see only :class:`attacks.types.Capture`."""

from attacks.config import AttackConfig, Recipe
from attacks.gradient_matching import GradientMatchingAttack
from attacks.grnn import GRNNConfig
from attacks.registry import ATTACKS, RECIPES, Attack, build_attack
from attacks.types import Capture, PublicInfo, Reconstruction

__all__ = [
    "ATTACKS",
    "RECIPES",
    "Attack",
    "AttackConfig",
    "Capture",
    "GRNNConfig",
    "GradientMatchingAttack",
    "PublicInfo",
    "Recipe",
    "Reconstruction",
    "build_attack",
]
