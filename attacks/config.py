"""What an attack is made of (:class:`Recipe`: one registry name per component) and the
settings of a run (:class:`AttackConfig`), whose component fields default to "the attack's
own choice" ("auto", or None for ``lr`` and ``regularisers``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from attacks.components.dummies import DUMMIES
from attacks.components.label_tasks import LABEL_TASKS
from attacks.components.objectives import OBJECTIVES
from attacks.components.optimisers import OPTIMISERS, SCHEDULES
from attacks.components.regularisers import REGULARISERS
from attacks.spike_domain import INITS, THRESHOLDS
from models.surrogate import parse_surrogate

AUTO = "auto"
# Pixel range [0, 1] for images (paper, Table III): "output" clamps the reconstruction;
# "step" projects after every optimiser step (Inverting Gradients' box constraint; with L-BFGS
# it corrupts the curvature pairs, see docs/explanation/models-and-attacks.md); "auto": the
# attack's own choice.
CLAMPS = (AUTO, "output", "step", "none")
Regularisers = tuple[tuple[str, float], ...]  # (registry name, weight) pairs


def parse_regularisers(spec: str | Regularisers | list | None) -> Regularisers | None:
    """``"tv=1e-4,..."`` (or ``"none"``/``""``: no regulariser), or (name, weight) pairs."""
    if spec is None:
        return None
    if isinstance(spec, str):
        items = [s for s in spec.replace(" ", "").split(",") if s and s != "none"]
        pairs = []
        for item in items:
            name, sep, weight = item.partition("=")
            if not sep:
                raise ValueError(f"regulariser {item!r}: write name=weight, e.g. tv=1e-4")
            pairs.append((name, float(weight)))
        spec = pairs
    return tuple((str(name), float(weight)) for name, weight in spec)


def _check_components(owner: str, values: dict[str, str], allow_auto: bool) -> None:
    for field, registry in (
        ("label", LABEL_TASKS),
        ("dummy", DUMMIES),
        ("objective", OBJECTIVES),
        ("optimiser", OPTIMISERS),
        ("schedule", SCHEDULES),
    ):
        value = values[field]
        valid = ([AUTO] if allow_auto else []) + sorted(registry)
        if value not in valid:
            raise ValueError(f"{owner}: unknown {field} {value!r}; valid: {', '.join(valid)}")


def _check_regularisers(owner: str, regularisers: Regularisers) -> None:
    for name, weight in regularisers:
        if name not in REGULARISERS:
            raise ValueError(
                f"{owner}: unknown regulariser {name!r}; valid: {', '.join(sorted(REGULARISERS))}"
            )
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{owner}: regulariser {name!r} needs a weight >= 0, got {weight}")


@dataclass(frozen=True)
class Recipe:
    """An attack's own choice of each component (registry names and their settings).
    Defaults are DLG's (Zhu et al. 2019)."""

    label: str = "soft"  # attacks.components.label_tasks.LABEL_TASKS
    dummy: str = "free"  # attacks.components.dummies.DUMMIES ("tied": free on event data)
    objective: str = "l2"  # attacks.components.objectives.OBJECTIVES
    regularisers: Regularisers = ()  # (attacks.components.regularisers name, weight) pairs
    optimiser: str = "lbfgs"  # attacks.components.optimisers.OPTIMISERS
    lr: float = 1.0
    schedule: str = "none"  # attacks.components.optimisers.SCHEDULES
    clamp: str = "output"  # CLAMPS, without "auto"
    # regularisers on victims without spiking neurons, where they differ (None: the same);
    # used only when the config leaves ``regularisers`` to the recipe
    ann_regularisers: Regularisers | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "regularisers", parse_regularisers(self.regularisers))
        object.__setattr__(self, "ann_regularisers", parse_regularisers(self.ann_regularisers))
        _check_components("recipe", dataclasses.asdict(self), allow_auto=False)
        _check_regularisers("recipe", self.regularisers)
        _check_regularisers("recipe", self.ann_regularisers or ())
        if self.clamp not in CLAMPS[1:]:
            raise ValueError(f"recipe: unknown clamp {self.clamp!r}; valid: output, step, none")
        if not self.lr > 0:
            raise ValueError(f"recipe: lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class AttackConfig:
    """Optimisation budget, dummy initialisation, hygiene and components of an attack.

    Defaults are the published ones: the components ("auto"; ``lr``/``regularisers`` None)
    are the attack's own (:class:`Recipe`: DLG/iDLG's L-BFGS lr 1 on the squared l2
    distance; 300 steps; the paper's dummy init); the spike-domain and hygiene options are
    off unless set.
    """

    iterations: int = 300  # optimiser steps (DLG/iDLG code: 300 L-BFGS steps)
    lr: float | None = None  # None: the attack's own (DLG/iDLG 1.0, IG 0.1)
    # "auto": U(0.45, 0.55) for images, |N(0, sigma)| for events (paper); "randn" is DLG's
    init: str = "auto"
    sigma: float = 0.1  # scale of the |N(0, sigma)| event dummy (paper Eq. 1)
    # Pixel range [0, 1] for images, see CLAMPS ("auto": DLG/iDLG "output", IG "step").
    # Event dummies are never clamped (spike intensities).
    clamp: str = AUTO
    threshold: str = "none"  # spike binarisation: "post" (Algorithm 1) or "in" (Algorithm 2)
    tau: float = 0.5  # binarisation threshold
    tolerance: float = 0.0  # stop early once the optimised loss is <= tolerance
    diverge_factor: float = 1e8  # loss above factor x initial loss: stop, status "diverged"
    restarts: int = 1  # independent dummies; the lowest final gradient loss wins
    seed: int = 0
    # components (registry names, see attacks.components); "auto"/None: the attack's own
    label: str = AUTO
    dummy: str = AUTO
    objective: str = AUTO
    # (name, weight) pairs or "tv=1e-4,..."; () or "none": no regulariser
    regularisers: Regularisers | str | None = None
    optimiser: str = AUTO
    schedule: str = AUTO
    # weight of the rate-leak feature term (attacks.components.features) added to a gradient
    # objective (l2, cosine); 0: none. The "features" objective (attack rates) is that term alone
    feature_weight: float = 0.0
    # spiking victims: the surrogate the attacker differentiates with, "SHAPE[:alpha=VALUE]"
    # (models.surrogate.parse_surrogate); "auto": the client's own. The forward is unchanged.
    surrogate: str = AUTO

    def __post_init__(self) -> None:
        for name in ("iterations", "restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, value, valid in (
            ("init", self.init, INITS),
            ("clamp", self.clamp, CLAMPS),
            ("threshold", self.threshold, THRESHOLDS),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if (
            self.sigma <= 0
            or (self.lr is not None and self.lr <= 0)
            or self.tolerance < 0
            or self.diverge_factor <= 1
        ):
            raise ValueError(
                "need sigma > 0, lr > 0, tolerance >= 0, diverge_factor > 1; got "
                f"sigma={self.sigma}, lr={self.lr}, tolerance={self.tolerance}, "
                f"diverge_factor={self.diverge_factor}"
            )
        if not (math.isfinite(self.feature_weight) and self.feature_weight >= 0):
            raise ValueError(f"feature_weight must be >= 0, got {self.feature_weight}")
        if self.surrogate != AUTO:
            parse_surrogate(self.surrogate)
        object.__setattr__(self, "regularisers", parse_regularisers(self.regularisers))
        _check_components("AttackConfig", dataclasses.asdict(self), allow_auto=True)
        if self.regularisers is not None:
            _check_regularisers("AttackConfig", self.regularisers)  # type: ignore[arg-type]

    def resolve(self, recipe: Recipe) -> AttackConfig:
        """This config with every "auto"/None component replaced by ``recipe``'s."""
        own = {
            f.name: getattr(recipe, f.name)
            for f in dataclasses.fields(Recipe)
            if f.name in AttackConfig.__dataclass_fields__ and getattr(self, f.name) in (AUTO, None)
        }
        return dataclasses.replace(self, **own)
