"""The composable gradient-matching attack: registries, recipes, config resolution, and each
component against its definition (deterministic checks; no optimiser trajectory compared)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from tests_helpers import ann_capture

from attacks import ATTACKS, RECIPES, AttackConfig, Capture, PublicInfo, Recipe, build_attack
from attacks.components.dummies import DUMMIES
from attacks.components.label_tasks import LABEL_TASKS
from attacks.components.objectives import OBJECTIVES, cosine_distance, gradient_distance
from attacks.components.optimisers import OPTIMISERS, SCHEDULES, ig_schedule, optimise
from attacks.components.regularisers import REGULARISERS, total_variation
from attacks.gradient_matching import GradientMatchingAttack
from attacks.spike_domain import init_dummy
from fl_sim.federation.training import loss_gradient
from models import build_model

SNN = PublicInfo("snn-lenet", (1, 28, 28), 10, batch_size=1, T=4)
EVENTS = PublicInfo("snn-lenet", (2, 16, 16), 10, batch_size=1, T=3, input_kind="events")


def snn_capture(public: PublicInfo = SNN, seed: int = 0) -> Capture:
    torch.manual_seed(seed)
    model = build_model(public.arch, public.input_shape, public.num_classes, T=public.T)
    if public.input_kind == "events":
        x = (torch.rand(public.T, 1, *public.input_shape) < 0.2).float()
    else:
        x = torch.rand(1, *public.input_shape)
    update = loss_gradient(model, x, torch.tensor([3]))
    return Capture(0, 0, update, model.state_dict(), public)


def test_registries_and_recipes() -> None:
    assert sorted(ATTACKS) == ["dlg", "grnn", "idlg", "ig", "rates", "rates-idlg", "rates-ig"]
    assert sorted(RECIPES) == ["dlg", "idlg", "ig", "rates"]
    assert sorted(DUMMIES) == ["free", "tied"]
    assert sorted(OBJECTIVES) == ["cosine", "features", "l2"]
    assert sorted(REGULARISERS) == ["tv"]
    assert sorted(OPTIMISERS) == ["adam", "lbfgs", "signed-adam"]
    assert sorted(SCHEDULES) == ["ig", "none"]
    assert sorted(LABEL_TASKS) == ["idlg", "soft"]
    for name in RECIPES:
        attack = build_attack(name)
        assert isinstance(attack, GradientMatchingAttack) and attack.name == name


def test_defaults_resolve_to_the_published_attacks() -> None:
    cfg = AttackConfig()
    assert (cfg.iterations, cfg.init, cfg.sigma, cfg.threshold, cfg.tau) == (
        300, "auto", 0.1, "none", 0.5
    )  # fmt: skip
    assert (cfg.tolerance, cfg.diverge_factor, cfg.restarts, cfg.seed) == (0.0, 1e8, 1, 0)
    dlg, idlg, ig = (build_attack(n).settings for n in ("dlg", "idlg", "ig"))  # type: ignore[union-attr]
    common = {"dummy": "free", "objective": "l2", "regularisers": (), "optimiser": "lbfgs"}
    for settings, label in ((dlg, "soft"), (idlg, "idlg")):
        assert settings.label == label and (settings.lr, settings.clamp) == (1.0, "output")
        assert {k: getattr(settings, k) for k in common} == common
        assert settings.schedule == "none"
    assert (ig.label, ig.dummy, ig.objective, ig.regularisers) == (
        "idlg", "tied", "cosine", (("tv", 1e-4),)
    )  # fmt: skip
    assert (ig.optimiser, ig.lr, ig.schedule, ig.clamp) == ("signed-adam", 0.1, "ig", "step")


def test_config_overrides_components_and_validates_them() -> None:
    cfg = AttackConfig(objective="cosine", regularisers="tv=0.5", lr=0.3, clamp="none")
    settings = build_attack("dlg", cfg).settings  # type: ignore[union-attr]
    assert (settings.objective, settings.regularisers, settings.lr, settings.clamp) == (
        "cosine", (("tv", 0.5),), 0.3, "none"
    )  # fmt: skip
    assert build_attack("ig", AttackConfig(regularisers="none")).settings.regularisers == ()  # type: ignore[union-attr]
    assert AttackConfig(regularisers=[("tv", 1)]).regularisers == (("tv", 1.0),)
    with pytest.raises(ValueError, match="objective 'l3'; valid: auto, cosine, features, l2"):
        AttackConfig(objective="l3")
    with pytest.raises(ValueError, match="unknown optimiser 'sgd'; valid: auto, adam, lbfgs"):
        AttackConfig(optimiser="sgd")
    with pytest.raises(ValueError, match="unknown regulariser 'l1'; valid: tv"):
        AttackConfig(regularisers="l1=2")
    with pytest.raises(ValueError, match="write name=weight"):
        AttackConfig(regularisers="tv")
    with pytest.raises(ValueError, match="weight >= 0"):
        AttackConfig(regularisers="tv=-1")
    with pytest.raises(ValueError, match="unknown clamp 'box'; valid: auto, output, step, none"):
        AttackConfig(clamp="box")
    with pytest.raises(ValueError, match="need sigma > 0, lr > 0"):
        AttackConfig(lr=0)
    with pytest.raises(ValueError, match="recipe: unknown label 'mine'"):
        Recipe(label="mine")


def test_objectives_and_tv_are_their_definitions() -> None:
    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    b = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    flat_a, flat_b = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    assert torch.isclose(gradient_distance(a, b), ((flat_a - flat_b) ** 2).sum())
    assert torch.isclose(cosine_distance(a, b), 1 - F.cosine_similarity(flat_a, flat_b, dim=0))
    assert float(cosine_distance(a, [2 * t for t in a])) == pytest.approx(0, abs=1e-6)
    x = torch.zeros(1, 1, 3, 3)
    assert float(total_variation(x + 0.7)) == 0
    x[0, 0, 1, 1] = 1.0  # 2 of 6 horizontal and 2 of 6 vertical differences are 1
    assert float(total_variation(x)) == pytest.approx(2 / 6 + 2 / 6)
    frames = torch.rand(4, 2, 1, 5, 5, generator=gen)  # [T,B,C,H,W]: every frame
    assert torch.isclose(total_variation(frames), total_variation(frames.flatten(0, 1)))


@pytest.mark.parametrize("iterations", [2, 16, 300, 4000])
def test_ig_schedule_is_inverting_gradients_multisteplr(iterations: int) -> None:
    """inversefed: MultiStepLR(milestones=[N // 2.667, N // 1.6, N // 1.142], gamma=0.1),
    stepped after every optimiser step."""
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[iterations // 2.667, iterations // 1.6, iterations // 1.142], gamma=0.1
    )
    for step in range(1, iterations + 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * ig_schedule(step, iterations))
        opt.step()
        sched.step()
    if iterations >= 16:  # x0.1 three times, near 3/8, 5/8, 7/8
        assert ig_schedule(iterations, iterations) == pytest.approx(1e-3)
        assert ig_schedule(iterations * 3 // 8 - 1, iterations) == 1.0


@pytest.mark.parametrize(("name", "signed"), [("adam", False), ("signed-adam", True)])
def test_adam_family_steps(name: str, signed: bool) -> None:
    """Adam's first step moves every coordinate by ~lr along -sign(g); when the gradient's
    magnitude changes from step to step (not its sign), signed Adam does not notice."""
    scale, centre = torch.tensor([1.0, 1e-3, 50.0]), torch.tensor([1.0, 1.0, -1.0])

    def run(growth: float, iterations: int) -> torch.Tensor:
        x = torch.zeros(3, requires_grad=True)
        calls = [0]

        def loss() -> torch.Tensor:
            calls[0] += 1
            return growth ** calls[0] * (scale * (x - centre) ** 2).sum()

        optimise(name, [x], loss, iterations, 0.1)
        return x.detach()

    assert torch.allclose(run(1.0, 1), torch.tensor([0.1, 0.1, -0.1]), atol=1e-5)
    assert torch.equal(run(1.0, 5), run(10.0, 5)) == signed


def test_tied_dummy_is_one_image_over_T_and_refuses_events() -> None:
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    tied, free = DUMMIES["tied"], DUMMIES["free"]
    image = tied.init(SNN, "auto", 0.1, gen())
    frames = free.init(SNN, "auto", 0.1, gen())
    assert image.shape == (1, 1, 28, 28) and torch.equal(image, frames[0])  # same draws
    inputs = tied.inputs(image, SNN)
    assert inputs.shape == (4, 1, 1, 28, 28)
    assert all(torch.equal(inputs[t], image) for t in range(4))
    batched = tied.inputs(torch.stack([image, 1 - image]), SNN, lead=1)
    assert batched.shape == (2, 4, 1, 1, 28, 28) and torch.equal(batched[1, 2], 1 - image)
    ann = dataclasses.replace(SNN, arch="lenet", T=1)
    assert torch.equal(tied.init(ann, "auto", 0.1, gen()), init_dummy(ann, "auto", 0.1, gen()))
    with pytest.raises(ValueError, match="dummy 'tied' needs image data"):
        tied.check(EVENTS)
    with pytest.raises(ValueError, match="dummy 'tied' needs image data"):
        build_attack("dlg", AttackConfig(dummy="tied", iterations=1)).reconstruct(
            snn_capture(EVENTS)
        )
    ig = build_attack("ig", AttackConfig(iterations=2)).reconstruct(snn_capture(EVENTS))
    assert ig.images.shape == (3, 1, 2, 16, 16)  # the recipe's tied dummy: free on events


def test_ig_on_a_spiking_victim_keeps_one_boxed_image() -> None:
    rec = build_attack("ig", AttackConfig(iterations=5)).reconstruct(snn_capture())
    assert rec.status == "ok" and rec.iterations == 5
    assert rec.images.shape == (1, 1, 28, 28)
    assert float(rec.images.min()) >= 0 and float(rec.images.max()) <= 1
    assert rec.dummy is not None and rec.dummy.shape == (4, 1, 1, 28, 28)
    assert all(torch.equal(rec.dummy[t], rec.images) for t in range(4))  # boxed every step
    assert 0 <= rec.grad_loss <= 2  # a cosine distance
    assert int(rec.labels[0]) == 3  # iDLG's rule


def test_ig_fits_the_gradient_of_a_real_digit() -> None:
    """Outcome, not trajectory: 60 signed-Adam steps cut the cosine distance by > 3x."""
    capture = ann_capture(2)
    attack = build_attack("ig", AttackConfig(iterations=60))
    assert isinstance(attack, GradientMatchingAttack)
    with torch.enable_grad():
        initial = float(attack.problem(capture).loss(False).detach())
    rec = attack.reconstruct(capture)
    assert rec.status == "ok" and math.isfinite(rec.grad_loss)
    assert rec.grad_loss < initial / 3, (initial, rec.grad_loss)


def test_fedavg_updates_go_through_the_composition() -> None:
    """Tied dummy + cosine + TV + signed Adam on a FedAvg capture of the SNN twin: the
    unrolled local steps take the replicated image (2 local steps, 2 samples)."""
    public = dataclasses.replace(SNN, update="delta", local_steps=2, local_lr=0.1, T=2)
    torch.manual_seed(0)
    model = build_model(public.arch, public.input_shape, 10, T=2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    delta = {k: torch.randn_like(v) * 1e-3 for k, v in start.items()}
    capture = Capture(0, 0, delta, start, public)
    rec = build_attack("ig", AttackConfig(iterations=2, label="soft")).reconstruct(capture)
    assert rec.images.shape == (2, 1, 28, 28) and rec.labels.shape == (2,)
    assert rec.status == "ok" and math.isfinite(rec.grad_loss)
