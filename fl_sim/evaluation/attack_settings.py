"""The attack role's keys: which attacks the eavesdropper runs on which captures, with
which budgets and settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from fl_sim.config import Section, at_least_one, check_choice
from fl_sim.evaluation.schedule import AttackSchedule
from fl_sim.names import ATTACK_NAMES, AUTO, CLAMPS, DUMMY_NAMES, INITS, THRESHOLDS, known

if TYPE_CHECKING:  # torch behind these: imported where used, after the cheap checks
    from attacks import Attack, AttackConfig


@dataclass(frozen=True)
class AttackSettings(Section):
    """What the eavesdropper attacks and how (every attack's settings; each takes its own)."""

    ROLE: ClassVar[str] = "attack"

    # the paper's attacks and the strongest on spiking victims (the rate leak)
    attacks: tuple[str, ...] = ("dlg", "idlg", "rates")
    # seed of the attacks' dummies, restarts and attack-budget draws; never the run seed, which
    # with a partition id would let an attack replay the client's private batch choice
    attack_seed: int = 0
    attack_budget: int = 0  # at most this many captures attacked per round (0: all)
    # rounds attacked (every round is captured and evaluated): all, or terms N, every:N,
    # first, last, comma-separated (fl_sim/evaluation/schedule.py)
    attack_rounds: str = "all"
    iterations: int = 300  # DLG/iDLG L-BFGS steps (published: 300)
    grnn_iterations: int = 1000  # GRNN RMSprop iterations (published: 1000)
    # attack rates (rate leak + feature inversion): Adam steps and TV weight (issue 11's
    # reference: 1000, 60)
    rates_iterations: int = 1000
    # "auto": 60 on spiking victims, 1e-2 on the ANN (attacks/rates.py); or one weight >= 0
    rates_tv: str = "auto"
    # weight of the rate-leak feature term added to dlg/idlg/ig's gradient objective (0: none)
    feature_weight: float = 0.0
    attack_dummy: str = "auto"  # auto (each attack's own), free (paper) or tied (images, SNN)
    # the surrogate the attacker differentiates spiking victims with: auto (the client's, ATan
    # alpha 2) or SHAPE[:alpha=VALUE], SHAPE in atan, sigmoid, softsign
    attack_surrogate: str = "auto"
    attack_init: str = "auto"  # auto: U(0.45, 0.55) images, |N(0, sigma)| events (paper)
    sigma: float = 0.1
    clamp: str = "auto"  # auto: the attack's own (DLG/iDLG: output, IG: step)
    threshold: str = "none"  # spike binarisation: post (Algorithm 1) or in (Algorithm 2)
    tau: float = 0.5
    restarts: int = 1
    tolerance: float = 0.0  # attack early stop on the gradient-matching loss
    batched: bool = True  # attack a round's captures together (attacks.batched)

    def __post_init__(self) -> None:
        at_least_one(self, "iterations", "restarts", "grnn_iterations", "rates_iterations")
        if self.attack_budget < 0:
            raise ValueError(f"attack_budget must be >= 0 (0: all), got {self.attack_budget}")
        check_choice("attack_init", self.attack_init, INITS)
        check_choice("clamp", self.clamp, CLAMPS)
        check_choice("threshold", self.threshold, THRESHOLDS)
        dummies = known(DUMMY_NAMES, "attacks.components.dummies", "DUMMIES")
        check_choice("attack_dummy", self.attack_dummy, (AUTO, *dummies))
        _ = self.rates_tv_weight  # "auto" or a weight >= 0
        if not self.feature_weight >= 0:
            raise ValueError(f"feature_weight must be >= 0, got {self.feature_weight}")
        attacks = known(ATTACK_NAMES, "attacks.registry", "ATTACKS")
        for attack in self.attacks:
            check_choice("attacks", attack, attacks)

    def check_components(self) -> None:
        """What only the attack code can check (it imports torch): the surrogate and the
        attack settings (sigma, tolerance, ...)."""
        from models.surrogate import parse_surrogate

        if self.attack_surrogate != AUTO:
            try:
                parse_surrogate(self.attack_surrogate)
            except ValueError as err:
                raise ValueError(f"attack_surrogate: {err}") from err
        self.attack_config()

    def schedule(self, rounds: int) -> AttackSchedule:
        """The rounds the eavesdropper attacks in a run of ``rounds`` rounds."""
        return AttackSchedule.parse(self.attack_rounds, rounds)

    @property
    def rates_tv_weight(self) -> float | None:
        """``rates_tv`` as a weight, or None for the attack's own per-victim default."""
        if self.rates_tv == AUTO:
            return None
        try:
            weight = float(self.rates_tv)
        except ValueError:
            weight = math.nan
        if not weight >= 0:
            raise ValueError(f"rates_tv: {self.rates_tv!r} is not auto or a weight >= 0")
        return weight

    def build_attacks(self) -> list[Attack]:
        """The configured attacks, each with its published budget unless overridden."""
        from attacks import GRNNConfig, build_attack

        grnn = GRNNConfig(iterations=self.grnn_iterations, seed=self.attack_seed)
        tv = self.rates_tv_weight
        rates = dataclasses.replace(
            self.attack_config(),
            iterations=self.rates_iterations,
            regularisers=None if tv is None else ((("tv", tv),) if tv else ()),
            feature_weight=0.0,  # rates' objective is the feature term itself
        )
        own = {"grnn": grnn, "rates": rates}
        return [
            build_attack(name, own.get(name, self.attack_config()), {"rates": rates})
            for name in self.attacks
        ]

    def attack_config(self) -> AttackConfig:
        """The settings shared by every attack, seeded by ``attack_seed``."""
        from attacks import AttackConfig

        return AttackConfig(
            iterations=self.iterations, init=self.attack_init, sigma=self.sigma,
            clamp=self.clamp, threshold=self.threshold, tau=self.tau,
            tolerance=self.tolerance, restarts=self.restarts, seed=self.attack_seed,
            dummy=self.attack_dummy, feature_weight=self.feature_weight,
            surrogate=self.attack_surrogate,
        )  # fmt: skip
