"""The paper's spike-domain adaptation and the optimisation hygiene of the attack core."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attacks import AttackConfig, Capture, PublicInfo, Reconstruction, build_attack
from attacks.gradient_matching import GradientMatchingAttack, lbfgs, step_projection
from attacks.spike_domain import binarise, init_dummy
from fl_sim.evaluation.metrics import spike_l2
from fl_sim.federation.training import loss_gradient
from models import build_model

EVENTS = PublicInfo("snn-lenet", (2, 16, 16), 11, batch_size=1, T=5, input_kind="events")


def event_capture(seed: int = 0, T: int = 5) -> tuple[Capture, torch.Tensor]:
    """An SNN update computed on random sparse binary event frames [T,1,2,16,16]."""
    pub = PublicInfo("snn-lenet", (2, 16, 16), 11, batch_size=1, T=T, input_kind="events")
    gen = torch.Generator().manual_seed(seed)
    frames = (torch.rand(T, 1, 2, 16, 16, generator=gen) < 0.2).float()
    torch.manual_seed(seed)
    model = build_model(pub.arch, pub.input_shape, pub.num_classes, T=T)
    update = loss_gradient(model, frames, torch.tensor([4]))
    return Capture(0, 0, update, model.state_dict(), pub), frames


def test_event_dummy_is_abs_normal_with_sigma() -> None:
    pub = PublicInfo("snn-lenet", (2, 32, 32), 11, batch_size=4, T=20, input_kind="events")
    x = init_dummy(pub, "auto", 0.1, torch.Generator().manual_seed(0))
    assert x.shape == (20, 4, 2, 32, 32) and float(x.min()) >= 0
    assert abs(float(x.mean()) - 0.1 * math.sqrt(2 / math.pi)) < 0.002  # E|N(0, s)| = s sqrt(2/pi)


def test_image_dummy_on_snn_is_gray_and_replicated_over_T() -> None:
    pub = PublicInfo("snn-lenet", (1, 28, 28), 10, batch_size=2, T=4)
    x = init_dummy(pub, "auto", 0.1, torch.Generator().manual_seed(0))
    assert x.shape == (4, 2, 1, 28, 28)
    assert float(x.min()) >= 0.45 and float(x.max()) <= 0.55
    assert all(torch.equal(x[0], x[t]) for t in range(4))


def test_algorithm2_binarises_after_every_step() -> None:
    capture, _ = event_capture()
    cfg = AttackConfig(threshold="in", tau=0.05)
    dummy = init_dummy(capture.public, "auto", 0.1, torch.Generator().manual_seed(1))
    dummy.requires_grad_(True)
    project = step_projection(dummy, cfg, capture.public)
    assert project is not None
    seen: list[bool] = []

    def checked_project() -> None:
        project()
        seen.append(bool(((dummy == 0) | (dummy == 1)).all()))

    def loss() -> torch.Tensor:  # any smooth loss: this tests the step hook, not the attack
        return ((dummy - 0.3) ** 2).sum()

    lbfgs([dummy], loss, iterations=6, lr=1.0, project=checked_project)
    assert seen == [True] * 6


@pytest.mark.parametrize("threshold", ["post", "in"])
def test_thresholded_event_reconstructions_are_binary(threshold: str) -> None:
    capture, frames = event_capture()
    cfg = AttackConfig(iterations=4, threshold=threshold, tau=0.1)
    rec = build_attack("dlg", cfg).reconstruct(capture)
    assert rec.images.shape == frames.shape  # events are scored as [T,B,C,H,W] frames
    assert set(torch.unique(rec.images).tolist()) <= {0.0, 1.0}
    assert math.isfinite(rec.grad_loss)
    assert spike_l2(frames[:, 0].numpy(), rec.images[:, 0].numpy()) >= 0


def test_unthresholded_event_dummy_is_not_clamped() -> None:
    capture, _ = event_capture()
    rec = build_attack("idlg", AttackConfig(iterations=3)).reconstruct(capture)
    assert rec.dummy is not None and torch.equal(rec.images, rec.dummy)


def test_idlg_label_when_classifier_saw_no_spikes() -> None:
    """T=1 and an all-zero input: no layer reaches threshold, the classifier input is 0, its
    weight gradient is all zeros, and the bias-gradient sign gives the label."""
    pub = PublicInfo("snn-lenet", (2, 16, 16), 11, batch_size=1, T=1, input_kind="events")
    torch.manual_seed(0)
    model = build_model(pub.arch, pub.input_shape, pub.num_classes, T=1)
    update = loss_gradient(model, torch.zeros(1, 1, 2, 16, 16), torch.tensor([7]))
    assert float(update["fc.weight"].abs().max()) == 0.0
    rec = build_attack("idlg", AttackConfig(iterations=1)).reconstruct(
        Capture(0, 0, update, model.state_dict(), pub)
    )
    assert int(rec.labels[0]) == 7


def test_spike_l2_counts_differing_spikes() -> None:
    a = np.zeros((3, 2, 4, 4))
    b = a.copy()
    b[0, 0, :2, :2] = 1  # 4 differing binary entries -> l2 = 2
    assert spike_l2(a, b) == 2.0
    with pytest.raises(ValueError, match="shape mismatch"):
        spike_l2(a, b[:2])
    assert torch.equal(binarise(torch.tensor([0.2, 0.5, 0.7]), 0.5), torch.tensor([0.0, 0.0, 1.0]))


def test_restarts_keep_the_lowest_gradient_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempts are recorded as they are made (no rerun is compared with another: an SNN
    trajectory need not repeat to the last bit): restarts draw different dummies, and the
    reconstruction kept is the attempt with the lowest final gradient loss."""
    capture, _ = event_capture(seed=3)
    attempts: list[tuple[int, Reconstruction]] = []
    attempt = GradientMatchingAttack.attempt

    def spy(
        self: GradientMatchingAttack, capture: Capture, restart: int = 0, start: object = None
    ) -> Reconstruction:
        rec = attempt(self, capture, restart, start)  # type: ignore[arg-type]
        attempts.append((restart, rec))
        return rec

    monkeypatch.setattr(GradientMatchingAttack, "attempt", spy)
    one = build_attack("dlg", AttackConfig(iterations=2)).reconstruct(capture)
    assert [r for r, _ in attempts] == [0] and one.grad_loss == attempts[0][1].grad_loss
    attempts.clear()
    three = build_attack("dlg", AttackConfig(iterations=2, restarts=3)).reconstruct(capture)
    assert [r for r, _ in attempts] == [0, 1, 2]
    recs = [rec for _, rec in attempts]
    assert all(math.isfinite(r.grad_loss) for r in recs)
    assert len({float(r.dummy.sum()) for r in recs if r.dummy is not None}) == 3  # 3 dummies
    best = min(recs, key=lambda r: r.grad_loss)
    assert three.grad_loss == best.grad_loss and torch.equal(three.images, best.images)


def test_tolerance_stops_early_with_status_converged() -> None:
    capture, _ = event_capture()
    rec = build_attack("idlg", AttackConfig(iterations=50, tolerance=1e12)).reconstruct(capture)
    assert (rec.status, rec.iterations) == ("converged", 1)


@pytest.mark.parametrize(("blowup", "status"), [(1e12, "diverged"), (math.nan, "nonfinite")])
def test_divergence_and_nonfinite_restore_the_previous_iterate(blowup: float, status: str) -> None:
    x = torch.ones(3, requires_grad=True)
    calls = [0]

    def loss() -> torch.Tensor:  # well-behaved for a while, then it blows up
        calls[0] += 1
        return (1.0 if calls[0] < 3 else blowup) * ((x - 2) ** 2).sum()

    got, steps = lbfgs([x], loss, iterations=10, lr=0.01, diverge_factor=1e8)
    assert got == status and steps < 10
    assert torch.isfinite(x).all()
