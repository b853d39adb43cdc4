"""Attacks by name, and the interface every attack implements.

A gradient-matching attack is a :class:`attacks.config.Recipe` (one file, e.g.
``attacks/ig.py``) plus one line in ``RECIPES``; two of them in sequence are one line in
``CHAINS``; another kind of attack is a class with ``name`` and ``reconstruct(capture)`` plus
one line in ``ATTACKS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from attacks import dlg, idlg, ig, rates
from attacks.chain import ChainedAttack
from attacks.config import AttackConfig, Recipe
from attacks.gradient_matching import GradientMatchingAttack
from attacks.grnn import GRNN, GRNNConfig
from attacks.types import Attack

RECIPES: dict[str, Recipe] = {
    "dlg": dlg.RECIPE,
    "idlg": idlg.RECIPE,
    "ig": ig.RECIPE,
    "rates": rates.RECIPE,
}
# The config an attack gets when none is given, where it differs from AttackConfig()'s.
DEFAULT_CONFIGS: dict[str, AttackConfig] = {"rates": AttackConfig(iterations=rates.ITERATIONS)}
# name -> (first, second): the second recipe starts from the first's reconstruction
CHAINS: dict[str, tuple[str, str]] = {
    "rates-ig": ("rates", "ig"),
    "rates-idlg": ("rates", "idlg"),
}


def composed(name: str, recipe: Recipe) -> Callable[[AttackConfig | None], GradientMatchingAttack]:
    """The factory of a registered recipe: config (None: ``DEFAULT_CONFIGS``' or the default
    AttackConfig) -> GradientMatchingAttack."""

    def build(config: AttackConfig | None = None) -> GradientMatchingAttack:
        return GradientMatchingAttack(config or DEFAULT_CONFIGS.get(name), recipe, name)

    build.__name__ = build.__qualname__ = f"build_{name.replace('-', '_')}"
    build.__doc__ = f"Attack {name!r}: {recipe}"
    return build


def chained(name: str, first: str, second: str) -> Callable[..., ChainedAttack]:
    """The factory of a registered chain: (config of the second stage, per-stage configs by
    recipe name) -> ChainedAttack; a stage without its own config gets ``config``."""

    def build(
        config: AttackConfig | None = None, stages: Mapping[str, AttackConfig] | None = None
    ) -> ChainedAttack:
        own = dict(stages or {})
        first_cfg = own.get(first, DEFAULT_CONFIGS.get(first) if config is None else config)
        return ChainedAttack(
            GradientMatchingAttack(first_cfg, RECIPES[first], first),
            GradientMatchingAttack(own.get(second, config), RECIPES[second], second),
            name,
        )

    build.__name__ = build.__qualname__ = f"build_{name.replace('-', '_')}"
    build.__doc__ = f"Attack {name!r}: {first}, then {second} from its reconstruction"
    return build


ATTACKS: dict[str, Callable[..., Attack]] = {
    **{name: composed(name, recipe) for name, recipe in RECIPES.items()},
    **{name: chained(name, *stages) for name, stages in CHAINS.items()},
    "grnn": GRNN,
}


def build_attack(
    name: str,
    config: AttackConfig | GRNNConfig | None = None,
    stages: Mapping[str, AttackConfig] | None = None,
) -> Attack:
    """Instantiate an attack. Gradient-matching attacks (dlg, idlg, ig, rates) take an
    :class:`AttackConfig` (none given: the defaults, with rates' own 1,000 steps); chains
    (``CHAINS``) take one too, for stages without their own in ``stages`` (recipe name ->
    config); GRNN takes a :class:`GRNNConfig`, or an :class:`AttackConfig` of which it uses
    ``iterations`` and ``seed`` only (its lr, momentum and TV weight stay GRNN's published
    values)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(sorted(ATTACKS))}")
    if isinstance(config, GRNNConfig) and name != "grnn":
        raise ValueError(f"attack {name!r} takes an AttackConfig, not a GRNNConfig")
    if name in CHAINS:
        return ATTACKS[name](config, stages)
    return ATTACKS[name](config)
