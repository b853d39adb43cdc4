"""Gradient inversion attacks. They see only :class:`attacks.types.Capture`."""

from attacks.gradient_matching import AttackConfig
from attacks.registry import ATTACKS, build_attack
from attacks.types import Capture, PublicInfo, Reconstruction

__all__ = ["ATTACKS", "AttackConfig", "Capture", "PublicInfo", "Reconstruction", "build_attack"]
