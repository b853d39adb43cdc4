"""Optimisation-based gradient inversion as a composition of small registries
(``attacks.components``): a dummy parametrisation, an objective, regularisers, an optimiser
with a step schedule, and a label task, named by a :class:`Recipe`.

An attack is ``GradientMatchingAttack(config, recipe, name)``; DLG, iDLG and Inverting
Gradients are recipes (``attacks/dlg.py``, ``idlg.py``, ``ig.py``) registered in
``attacks.registry``. The loop: per restart, a seeded dummy and label task; the update the
dummy would produce (FedSGD gradient or FedAvg's unrolled local steps,
:func:`attacks.local_update.simulated_update`) is compared to the captured one by the
objective, regularisers are added, and the optimiser runs with the spike-domain projections
(Algorithms 1 and 2) and the box constraint; the restart with the lowest final objective
(``grad_loss``) wins.

The rate leak (``attacks.components.features``) enters as the ``features`` objective (attack
``rates``: the dummy's classifier input against the one read off the update, no gradient
simulated) or as a term ``feature_weight`` x that distance added to a gradient objective.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from attacks.components.dummies import DUMMIES, Dummy, scored_output
from attacks.components.features import classifier_input, recovered_features
from attacks.components.label_tasks import LABEL_TASKS, LabelTask, soft_cross_entropy
from attacks.components.objectives import FEATURE_OBJECTIVES, OBJECTIVES, gradient_distance
from attacks.components.optimisers import lbfgs, optimise
from attacks.components.regularisers import REGULARISERS
from attacks.config import AUTO, CLAMPS, AttackConfig, Recipe, Regularisers
from attacks.defences import adapt, known_defences
from attacks.local_update import observed_update, simulated_update
from attacks.spike_domain import binarise
from attacks.types import Capture, PublicInfo, Reconstruction
from attacks.victim import target_gradients, victim_from_capture
from models import SPIKING
from models.surrogate import annealer, parse_surrogate, set_surrogate

__all__ = [
    "CLAMPS",
    "RESTART_SEED_STRIDE",
    "AttackConfig",
    "GradientMatchingAttack",
    "LabelTask",
    "MatchingProblem",
    "Recipe",
    "better",
    "capture_generator",
    "gradient_distance",
    "lbfgs",
    "scored_output",
    "soft_cross_entropy",
    "step_projection",
]

RESTART_SEED_STRIDE = 7919  # restart r draws its dummy from seed + r * stride


def capture_generator(seed: int, capture: Capture) -> torch.Generator:
    """Seeded per capture, so reruns and the ANN/SNN arms draw the same dummies."""
    return torch.Generator().manual_seed(seed * 1_000_003 + capture.round * 10_007 + capture.client)


@dataclasses.dataclass(frozen=True)
class MatchingProblem:
    """One attempt's optimisation problem: the dummy variable (in its parametrisation), the
    label task, and ``loss(regularised=True)``: the objective between the update the dummy
    produces and the captured one, plus the weighted regularisers unless ``False``.
    ``features``: the classifier input read off the update (rate leak) when the loss uses it;
    ``before_step(step, steps)``: what to do before each optimiser step (surrogate annealing)."""

    dummy: torch.Tensor
    parametrisation: Dummy
    task: LabelTask
    loss: Callable[..., torch.Tensor]
    features: torch.Tensor | None = None
    before_step: Callable[[int, int], None] | None = None

    @property
    def variables(self) -> list[torch.Tensor]:
        """What the optimiser moves: the dummy, then the label task's variables."""
        return [self.dummy, *self.task.variables]


class GradientMatchingAttack:
    """Optimise a dummy input (and maybe label) so the update it produces - FedSGD's
    gradient, or FedAvg's unrolled local steps - matches the captured one.

    ``recipe`` (default: the class's) names the attack's own components; ``config`` sets the
    budget and may override any component. ``settings`` is the config with every "auto"
    resolved.
    """

    name = "gradient-matching"
    recipe = Recipe()

    def __init__(
        self, config: AttackConfig | None = None, recipe: Recipe | None = None, name: str = ""
    ) -> None:
        self.config = config or AttackConfig()
        if recipe is not None:
            self.recipe = recipe
        if name:
            self.name = name
        self.settings = self.config.resolve(self.recipe)
        if self.settings.objective in FEATURE_OBJECTIVES and self.settings.feature_weight:
            raise ValueError(
                f"{self.name}: objective {self.settings.objective!r} is the feature term alone; "
                "feature_weight adds that term to a gradient objective (l2, cosine)"
            )

    def victim(self, capture: Capture) -> nn.Module:
        """The victim at the captured global weights; its spiking neurons differentiate
        through the attacker's ``surrogate`` if one is set (the forward stays the client's)."""
        model = victim_from_capture(capture)
        if self.settings.surrogate != AUTO:
            set_surrogate(model, parse_surrogate(self.settings.surrogate))
        return model

    def regularisers_for(self, public: PublicInfo) -> Regularisers:
        """The weighted regularisers on ``public``'s victim: the recipe's ANN ones on a victim
        without spiking neurons when it has them and the config did not set its own."""
        own = self.recipe.ann_regularisers
        if own is not None and self.config.regularisers is None and public.arch not in SPIKING:
            return own
        return self.settings.regularisers  # type: ignore[return-value]

    def dummy_for(self, public: PublicInfo) -> Dummy:
        """The dummy parametrisation for ``public``: a recipe's "tied" falls back to "free"
        on event data (no static image to tie); one asked for in the config is checked."""
        name = self.settings.dummy
        if name == "tied" and self.config.dummy == AUTO and public.input_kind == "events":
            name = "free"
        dummy = DUMMIES[name]
        dummy.check(public)
        return dummy

    def label_task(self, model: nn.Module, capture: Capture, gen: torch.Generator) -> LabelTask:
        """How this attack handles the unknown label."""
        return LABEL_TASKS[self.settings.label](model, capture, gen)

    def reconstruct(self, capture: Capture) -> Reconstruction:
        """Run ``restarts`` independent attacks; keep the lowest final gradient loss."""
        return self.reconstruct_from(capture, None)

    def reconstruct_from(self, capture: Capture, start: torch.Tensor | None) -> Reconstruction:
        """:meth:`reconstruct` with every restart's dummy starting at ``start`` (the
        attacker's own earlier result, see :meth:`start_from`) instead of the seeded draw."""
        began = time.perf_counter()
        best: Reconstruction | None = None
        for restart in range(self.config.restarts):
            rec = self.attempt(capture, restart, start)
            if best is None or better(rec, best):
                best = rec
        assert best is not None
        return dataclasses.replace(best, seconds=time.perf_counter() - began)

    def start_from(self, previous: Reconstruction, public: PublicInfo) -> torch.Tensor:
        """This attack's dummy variable holding another attack's reconstruction."""
        return self.dummy_for(public).start(previous.images, previous.dummy, public)

    def problem(
        self, capture: Capture, restart: int = 0, start: torch.Tensor | None = None
    ) -> MatchingProblem:
        """The seeded optimisation problem of one attempt: variables and loss; the dummy
        starts at ``start`` when given (the label task still draws from the seeded generator)."""
        cfg, pub = self.settings, capture.public
        dummy_kind = self.dummy_for(pub)
        model = self.victim(capture)
        params = [p.requires_grad_(True) for p in model.parameters()]
        features_only = cfg.objective in FEATURE_OBJECTIVES
        target = None if features_only else target_gradients(model, capture)
        features = None
        if features_only or cfg.feature_weight:
            features = recovered_features(model, observed_update(capture), pub).detach()
        gen = capture_generator(cfg.seed + restart * RESTART_SEED_STRIDE, capture)
        dummy = dummy_kind.init(pub, cfg.init, cfg.sigma, gen).to(capture.device)
        if start is not None:
            if start.shape != dummy.shape:
                raise ValueError(
                    f"{self.name}: start {tuple(start.shape)} does not match the dummy "
                    f"{tuple(dummy.shape)}"
                )
            dummy = start.detach().clone().to(device=dummy.device, dtype=dummy.dtype)
        dummy.requires_grad_(True)
        task = self.label_task(model, capture, gen)
        if features_only and task.variables:
            raise ValueError(
                f"{self.name}: objective {cfg.objective!r} does not involve the label, so label "
                f"task {cfg.label!r} has nothing to fit its variables to: use label 'idlg'"
            )
        objective = OBJECTIVES[cfg.objective]
        feature_term = OBJECTIVES["features"]
        regularisers = [(REGULARISERS[n], w) for n, w in self.regularisers_for(pub)]
        defences = known_defences(pub, capture.client)

        def matching_loss(regularised: bool = True) -> torch.Tensor:
            inputs = dummy_kind.inputs(dummy, pub)
            if features_only:
                loss = objective([classifier_input(model, inputs)], [features])
            else:
                update = simulated_update(model, params, inputs, task.loss, pub, create_graph=True)
                if defences:  # the adaptive attacker mirrors the public defences
                    update = adapt(update, target, defences)  # type: ignore[arg-type]
                loss = objective(update, target)  # type: ignore[arg-type]
                if cfg.feature_weight:
                    feats = classifier_input(model, inputs)
                    loss = loss + cfg.feature_weight * feature_term([feats], [features])
            for regulariser, weight in regularisers if regularised else ():
                loss = loss + weight * regulariser(dummy)
            return loss

        return MatchingProblem(dummy, dummy_kind, task, matching_loss, features, annealer(model))

    def attempt(
        self, capture: Capture, restart: int = 0, start: torch.Tensor | None = None
    ) -> Reconstruction:
        """One optimisation from one seeded dummy (or from ``start``)."""
        began = time.perf_counter()
        cfg, pub = self.settings, capture.public
        problem = self.problem(capture, restart, start)
        dummy = problem.dummy
        status, steps = optimise(
            cfg.optimiser,
            problem.variables,
            problem.loss,
            cfg.iterations,
            cfg.lr,  # type: ignore[arg-type]
            cfg.schedule,
            project=step_projection(dummy, cfg, pub),
            tolerance=cfg.tolerance,
            diverge_factor=cfg.diverge_factor,
            before_step=problem.before_step,
        )
        if cfg.threshold == "post":  # Algorithm 1
            with torch.no_grad():
                dummy.copy_(binarise(dummy, cfg.tau))
        with torch.enable_grad():
            final = float(problem.loss(False).detach())
        images, kept = problem.parametrisation.output(dummy.detach(), pub, cfg.clamp)
        return Reconstruction(
            images=images,
            labels=problem.task.labels().detach(),
            grad_loss=final,
            status=status,
            iterations=steps,
            seconds=time.perf_counter() - began,
            dummy=kept,
        )


def better(a: Reconstruction, b: Reconstruction) -> bool:
    """Is ``a`` a better restart than ``b``: finite and lower final gradient loss."""
    if not math.isfinite(a.grad_loss):
        return False
    return not math.isfinite(b.grad_loss) or a.grad_loss < b.grad_loss


def step_projection(
    dummy: torch.Tensor, cfg: AttackConfig, public: PublicInfo
) -> Callable[[], object] | None:
    """What to apply after every optimiser step: Algorithm 2's binarisation, or the
    [0, 1] projection of images under ``clamp="step"``; nothing by default. ``cfg`` is a
    resolved config (``GradientMatchingAttack.settings``)."""
    if cfg.threshold == "in":
        return lambda: dummy.data.copy_(binarise(dummy.data, cfg.tau))
    if cfg.clamp == "step" and public.input_kind == "image":
        return lambda: dummy.data.clamp_(0, 1)
    return None
