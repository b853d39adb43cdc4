"""Attacks by name."""

from __future__ import annotations

from attacks.dlg import DLG
from attacks.gradient_matching import AttackConfig, GradientMatchingAttack
from attacks.idlg import IDLG

ATTACKS: dict[str, type[GradientMatchingAttack]] = {"dlg": DLG, "idlg": IDLG}


def build_attack(name: str, config: AttackConfig | None = None) -> GradientMatchingAttack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name](config)
