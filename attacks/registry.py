"""Attacks by name, and the interface every attack implements."""

from __future__ import annotations

from attacks.dlg import DLG
from attacks.gradient_matching import AttackConfig
from attacks.grnn import GRNN, GRNNConfig
from attacks.idlg import IDLG
from attacks.types import Attack

ATTACKS: dict[str, type[Attack]] = {"dlg": DLG, "grnn": GRNN, "idlg": IDLG}


def build_attack(name: str, config: AttackConfig | GRNNConfig | None = None) -> Attack:
    """Instantiate an attack. DLG/iDLG take an :class:`AttackConfig`; GRNN takes a
    :class:`GRNNConfig`, or an :class:`AttackConfig` of which it uses ``iterations`` and
    ``seed`` only (its lr, momentum and TV weight stay GRNN's published values)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(sorted(ATTACKS))}")
    if isinstance(config, GRNNConfig) and name != "grnn":
        raise ValueError(f"attack {name!r} takes an AttackConfig, not a GRNNConfig")
    return ATTACKS[name](config)  # type: ignore[call-arg]
