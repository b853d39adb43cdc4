"""The entry point: ``reconstruct_batch(attack, captures)`` computes what ``[attack.reconstruct(c)
for c in captures]`` computes, up to float rounding, as P independent problems in one batch.

The same per-attempt setup (victim, target, ``capture_generator`` seed per capture and
restart, the attack's dummy parametrisation and label task), the same optimiser control flow
per problem (:mod:`attacks.batched.optimisers`), step projection, hygiene
(``nonfinite``/``diverged``/``converged``), binarisation, scoring and choice among restarts.
Only the P losses and their gradients are computed in one batch, by the grouped engine
(:mod:`attacks.batched.grouped`) or the vmap engine (:mod:`attacks.batched.vmap`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import torch

from attacks.batched import forms
from attacks.batched.grouped import GroupedEvaluator, victim_unsupported
from attacks.batched.optimisers import BATCHED_OPTIMISERS, optimise
from attacks.batched.problems import Evaluator, Problems, numel
from attacks.components.features import recovered_features
from attacks.components.label_tasks import LabelTask
from attacks.components.objectives import FEATURE_OBJECTIVES
from attacks.config import AttackConfig
from attacks.defences import shared_defences
from attacks.gradient_matching import (
    RESTART_SEED_STRIDE,
    GradientMatchingAttack,
    better,
    capture_generator,
    step_projection,
)
from attacks.local_update import observed_update
from attacks.spike_domain import binarise
from attacks.types import Capture, PublicInfo, Reconstruction
from attacks.victim import last_linear, target_gradients
from models.surrogate import annealer

ENGINES = ("auto", "grouped", "vmap")
# AttackConfig fields this engine mirrors; any other field must keep its default.
MIRRORED_CONFIG = frozenset(
    {
        "iterations",
        "lr",
        "init",
        "sigma",
        "clamp",
        "threshold",
        "tau",
        "tolerance",
        "diverge_factor",
        "restarts",
        "seed",
        "label",
        "dummy",
        "objective",
        "regularisers",
        "optimiser",
        "schedule",
        "feature_weight",
        "surrogate",
    }
)
# methods whose behaviour the engine reproduces from the attack's settings, not by calling them
_OWN_METHODS = ("reconstruct", "reconstruct_from", "attempt", "label_task", "dummy_for")


def check_attack(attack: object) -> None:
    """Refuse, naming it, what the batched engine would silently get wrong."""
    if not isinstance(attack, GradientMatchingAttack):
        raise NotImplementedError(
            f"attack {getattr(attack, 'name', attack)!r} is not a gradient-matching "
            "composition (GradientMatchingAttack): the batched engine cannot batch it"
        )
    for method in _OWN_METHODS:
        if getattr(type(attack), method) is not getattr(GradientMatchingAttack, method):
            raise NotImplementedError(
                f"attack {attack.name!r} overrides {method}(): the batched engine cannot batch it"
            )
    for f in dataclasses.fields(AttackConfig):
        value = getattr(attack.config, f.name)
        if f.name not in MIRRORED_CONFIG and value != f.default:
            raise NotImplementedError(
                f"batched engine does not implement AttackConfig.{f.name}={value!r}"
            )
    s = attack.settings
    if s.label not in forms.BATCHED_LABEL_TASKS:
        raise NotImplementedError(f"batched engine has no form of label task {s.label!r}")
    if s.optimiser not in BATCHED_OPTIMISERS:
        raise NotImplementedError(f"batched engine has no form of optimiser {s.optimiser!r}")


def common_public(captures: Sequence[Capture], simulates: bool = True) -> PublicInfo:
    """The captures' shared public info; ``simulates``: the attack simulates the client's
    update (FedSGD, or FedAvg over one mini-batch per epoch on the vmap engine), as every
    objective but the rate leak's ``features`` does."""
    public = captures[0].public
    for c in captures[1:]:
        if c.public != public:
            fields = [
                f"{f.name} ({getattr(public, f.name)!r} vs {getattr(c.public, f.name)!r})"
                for f in dataclasses.fields(PublicInfo)
                if getattr(public, f.name) != getattr(c.public, f.name)
            ]
            raise ValueError(
                f"captures must share PublicInfo; capture round={c.round} client={c.client} "
                f"differs from the first in {', '.join(fields)}: group captures by public info"
            )
    if shared_defences(public) is None:
        raise NotImplementedError(
            f"batched engine mirrors only defences every client applies, not those limited "
            f"to one client in {list(public.transforms)}: attack them one at a time"
        )
    if simulates and public.update != "gradient" and public.local_steps != 1:
        raise NotImplementedError(
            f"batched engine unrolls FedAvg {public.update!r} updates of one mini-batch per "
            f"epoch, not local_steps={public.local_steps}: attack them one at a time"
        )
    return public


def grouped_unsupported(pb: Problems) -> str | None:
    """None if the grouped engine can run ``pb``, else the reason it cannot."""
    if pb.public.update != "gradient" and pb.objective not in FEATURE_OBJECTIVES:
        return f"it matches FedSGD gradients only, not FedAvg {pb.public.update!r} updates"
    reason = victim_unsupported(pb.model)
    if reason is not None:
        return reason
    if pb.objective not in forms.BATCHED_OBJECTIVES and pb.objective not in FEATURE_OBJECTIVES:
        return f"no batched form of objective {pb.objective!r}"
    missing = [n for n, _ in pb.regularisers if n not in forms.BATCHED_REGULARISERS]
    return f"no batched form of regularisers {missing}" if missing else None


@dataclasses.dataclass
class Batch:
    """A prepared batch: problems (capture x restart), their start point and loss evaluator."""

    public: PublicInfo
    problems: Problems
    tasks: list[LabelTask]
    x: torch.Tensor  # [P*restarts, n] initial variables, flattened as torch's LBFGS does
    evaluate: Evaluator


def prepare(attack: GradientMatchingAttack, captures: Sequence[Capture], engine: str) -> Batch:
    """The per-attempt setup of ``GradientMatchingAttack.attempt`` for every capture and
    restart, in the same order (victim, target, seeded generator, dummy, label task)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    check_attack(attack)
    cfg = attack.settings
    public = common_public(captures, simulates=cfg.objective not in FEATURE_OBJECTIVES)
    dummy_kind = attack.dummy_for(public)
    model = attack.victim(captures[0])
    uses_features = cfg.objective in FEATURE_OBJECTIVES or bool(cfg.feature_weight)
    features: list[torch.Tensor] = []
    names = [n for n, _ in model.named_parameters()]
    params: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    buffers: dict[str, list[torch.Tensor]] = {n: [] for n, _ in model.named_buffers()}
    targets: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    flats, tasks = [], []
    dummy_shape: tuple[int, ...] = ()
    var_shapes: list[tuple[int, ...]] = []
    named_params, named_buffers = list(model.named_parameters()), list(model.named_buffers())
    for i, capture in enumerate(captures):
        if i > 0:
            _load_state(model, capture.global_state, named_params + named_buffers)
        target = target_gradients(model, capture)
        if uses_features:
            leaked = recovered_features(model, observed_update(capture), public).detach()
        for restart in range(cfg.restarts):
            if uses_features:
                features.append(leaked)
            for (n, p), g in zip(named_params, target, strict=True):
                params[n].append(p.detach().clone())
                targets[n].append(g.detach())
            for n, b in named_buffers:
                buffers[n].append(b.detach().clone())
            gen = capture_generator(cfg.seed + restart * RESTART_SEED_STRIDE, capture)
            dummy = dummy_kind.init(public, cfg.init, cfg.sigma, gen).to(capture.device)
            task = attack.label_task(model, capture, gen)
            shapes = [tuple(v.shape) for v in task.variables]
            if not tasks:
                dummy_shape, var_shapes = tuple(dummy.shape), shapes
            elif shapes != var_shapes:
                raise ValueError(
                    f"label variables of capture {i} have shapes {shapes}, not {var_shapes}"
                )
            flats.append(
                torch.cat([dummy.reshape(-1), *[v.detach().reshape(-1) for v in task.variables]])
            )
            tasks.append(task)

    task_fn, consts = forms.label_task(cfg.label, tasks, public.num_classes, public.batch_size)
    pb = Problems(
        model=model,
        public=public,
        names=names,
        params={n: torch.stack(v) for n, v in params.items()},
        buffers={n: torch.stack(v) for n, v in buffers.items()},
        targets={n: torch.stack(v) for n, v in targets.items()},
        dummy=dummy_kind,
        dummy_shape=dummy_shape,
        var_shapes=var_shapes,
        task=task_fn,
        consts=consts,
        objective=cfg.objective,
        regularisers=attack.regularisers_for(public),
        features=torch.stack(features) if uses_features else None,
        feature_weight=cfg.feature_weight,
        classifier=last_linear(model)[0],
        defences=tuple(shared_defences(public) or ()),
    )
    reason = grouped_unsupported(pb)
    if engine == "auto":
        engine = "grouped" if reason is None else "vmap"
    if engine == "grouped" and reason is not None:
        raise ValueError(f"grouped engine cannot run this batch: {reason}")
    if engine == "vmap" and uses_features:
        raise NotImplementedError(
            "the vmap engine has no form of the rate-leak feature term (objective "
            f"{cfg.objective!r}, feature_weight {cfg.feature_weight}); the grouped engine "
            f"has, but cannot run this batch: {reason}"
        )
    evaluate: Evaluator = GroupedEvaluator(pb) if engine == "grouped" else _vmap(pb)
    return Batch(public, pb, tasks, torch.stack(flats), evaluate)


def _load_state(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], named: list[tuple[str, torch.Tensor]]
) -> None:
    """``model.load_state_dict(state)`` for a model whose tensors are ``named``: the same
    strict key and shape checks and copies, without its per-module traversal (~0.7 ms a
    capture, a third of the per-capture setup at P = 256)."""
    if len(state) != len(named) or any(n not in state for n, _ in named):
        model.load_state_dict(dict(state))  # raises, naming the missing/unexpected keys
        return
    with torch.no_grad():
        for n, t in named:
            value = state[n]
            if value.shape != t.shape:
                model.load_state_dict(dict(state))  # raises, naming the shape mismatch
                return
            t.copy_(value)


def _vmap(pb: Problems) -> Evaluator:
    from attacks.batched.vmap import VmapEvaluator

    return VmapEvaluator(pb)


def reconstruct_batch(
    attack: GradientMatchingAttack, captures: Sequence[Capture], engine: str = "auto"
) -> list[Reconstruction]:
    """``[attack.reconstruct(c) for c in captures]`` computed as one batch.

    All captures must share the same :class:`PublicInfo` (group them by it first; a mismatch
    raises ValueError). Each capture's ``restarts`` attempts are separate problems of the
    batch; the best one is kept as ``reconstruct`` keeps it. ``engine``: "auto" (grouped when
    the victim and components allow, else vmap), "grouped" or "vmap". ``seconds`` of each
    result is the batch's wall time divided by the number of captures. Raises
    NotImplementedError, naming it, for what it cannot batch (see :func:`check_attack`).
    """
    start = time.perf_counter()
    if len(captures) == 0:
        return []
    batch = prepare(attack, captures, engine)
    cfg, public, pb, x = attack.settings, batch.public, batch.problems, batch.x
    n_problems, nd = x.shape[0], numel(pb.dummy_shape)
    dummies = x[:, :nd].view(n_problems, *pb.dummy_shape)  # a view: projections act on x
    status, steps = optimise(
        cfg.optimiser,
        x,
        batch.evaluate,
        cfg.iterations,
        cfg.lr,  # type: ignore[arg-type]
        cfg.schedule,
        project=step_projection(dummies, cfg, public),
        tolerance=cfg.tolerance,
        diverge_factor=cfg.diverge_factor,
        before_step=annealer(batch.evaluate.model),
    )
    if cfg.threshold == "post":  # Algorithm 1
        dummies.copy_(binarise(dummies, cfg.tau))
    final, _ = batch.evaluate(
        torch.arange(n_problems, device=x.device), x, need_grad=False, regularised=False
    )
    seconds = (time.perf_counter() - start) / len(captures)

    results = []
    for i in range(len(captures)):
        best: Reconstruction | None = None
        for p in range(i * cfg.restarts, (i + 1) * cfg.restarts):
            images, kept = pb.dummy.output(dummies[p].clone(), public, cfg.clamp)
            task = batch.tasks[p]
            _, variables = pb.split(x[p : p + 1])
            with torch.no_grad():  # the task's own labels() reads its variables
                for v, value in zip(task.variables, variables, strict=True):
                    v.copy_(value[0])
            attempt = Reconstruction(
                images=images,
                labels=task.labels().detach(),
                grad_loss=float(final[p]),
                status=status[p],
                iterations=steps[p],
                seconds=seconds,
                dummy=kept,
            )
            if best is None or better(attempt, best):
                best = attempt
        assert best is not None
        results.append(best)
    return results
