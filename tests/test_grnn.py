"""GRNN: its generator, its loss pieces, and reconstructions of real digits (ANN and SNN)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from attacks import ATTACKS, AttackConfig, Capture, GRNNConfig, PublicInfo, build_attack
from attacks.grnn import GRNN, GRNNGenerator, seeded_generator, tv_loss
from fl_sim.evaluation.metrics import image_metrics

sys.path.insert(0, str(Path(__file__).parent))
from test_attacks import capture_of  # noqa: E402

torch.set_num_threads(1)  # single-sample steps are dispatch-bound (KNOWLEDGE.md)


def public(arch: str, T: int = 1, batch_size: int = 1) -> PublicInfo:
    return PublicInfo(arch, (1, 28, 28), 10, batch_size, T=T)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 25, 40)])
def test_generator_makes_images_in_unit_range_and_soft_labels(
    shape: tuple[int, int, int],
) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        images, probs = GRNNGenerator(shape, 7)(torch.randn(3, 128))
    assert images.shape == (3, *shape)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert probs.shape == (3, 7) and torch.allclose(probs.sum(-1), torch.ones(3))


def test_tv_loss_is_grnns() -> None:
    assert float(tv_loss(torch.full((2, 1, 5, 5), 0.3))) == 0
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0  # one unit vertical and one horizontal jump, each over 2 differences
    assert torch.isclose(tv_loss(x), torch.tensor(2 * (1 / 2 + 1 / 2)))


@pytest.mark.parametrize(("arch", "index"), [("lenet5-grnn", 1), ("lenet", 3)])
def test_ann_reconstruction_beats_the_initial_output(arch: str, index: int) -> None:
    """200 of the 1000 published iterations already cut the MSE to the truth by > 2x
    (measured ratios ~0.13-0.3 here; 1000 iterations give ~0.04-0.23 on LeNet-5)."""
    capture, x, label = capture_of(public(arch), index)
    generator, noise = seeded_generator(capture, seed=0)
    with torch.no_grad():
        initial, _ = generator(noise)
    rec = GRNN(GRNNConfig(iterations=200)).reconstruct(capture)
    assert rec.status == "ok" and rec.iterations == 200 and rec.dummy is None
    assert rec.images.shape == x.shape
    assert float(rec.images.min()) >= 0 and float(rec.images.max()) <= 1
    before = image_metrics(x[0].numpy(), initial[0].numpy()).mse
    after = image_metrics(x[0].numpy(), rec.images[0].numpy()).mse
    assert after < 0.5 * before, (before, after)
    assert int(rec.labels[0]) == label
    assert 0 <= rec.grad_loss < float("inf")


def test_snn_path_runs_and_returns_finite_images() -> None:
    capture, x, _ = capture_of(public("snn-lenet5", T=4), 5)
    rec = build_attack("grnn", GRNNConfig(iterations=10)).reconstruct(capture)
    assert rec.status == "ok" and rec.iterations == 10
    assert rec.images.shape == x.shape and torch.isfinite(rec.images).all()
    assert float(rec.images.min()) >= 0 and float(rec.images.max()) <= 1
    assert rec.dummy is not None and rec.dummy.shape == (4, 1, 1, 28, 28)
    assert torch.equal(rec.dummy.mean(0), rec.images)
    assert rec.labels.shape == (1,) and torch.isfinite(torch.tensor(rec.grad_loss))


def test_batches_get_one_noise_vector_per_image() -> None:
    capture, _, _ = capture_of(public("lenet5-grnn"), 0)
    batch = Capture(0, 0, capture.update, capture.global_state, public("lenet5-grnn", 1, 3))
    _, noise = seeded_generator(batch, seed=0)
    assert noise.shape == (3, 128)
    rec = GRNN(GRNNConfig(iterations=2)).reconstruct(batch)
    assert rec.images.shape == (3, 1, 28, 28) and rec.labels.shape == (3,)


def test_same_seed_same_result_whatever_the_global_rng() -> None:
    capture, _, _ = capture_of(public("lenet5-grnn"), 7)
    torch.manual_seed(123)
    a = GRNN(GRNNConfig(iterations=5, seed=1)).reconstruct(capture)
    torch.manual_seed(456)
    b = GRNN(GRNNConfig(iterations=5, seed=1)).reconstruct(capture)
    assert torch.equal(a.images, b.images) and a.grad_loss == b.grad_loss
    c = GRNN(GRNNConfig(iterations=5, seed=2)).reconstruct(capture)
    assert not torch.equal(a.images, c.images)


def test_nonfinite_gradients_stop_with_finite_output() -> None:
    capture, _, _ = capture_of(public("lenet5-grnn"), 0)
    poisoned = {k: torch.full_like(v, float("nan")) for k, v in capture.update.items()}
    broken = Capture(0, 0, poisoned, capture.global_state, capture.public)
    rec = GRNN(GRNNConfig(iterations=5)).reconstruct(broken)
    assert rec.status == "nonfinite" and rec.iterations == 0
    assert torch.isfinite(rec.images).all()


def test_registry_builds_grnn_from_either_config() -> None:
    assert ATTACKS["grnn"] is GRNN and GRNN.name == "grnn"
    assert isinstance(build_attack("grnn"), GRNN)
    assert build_attack("grnn").config == GRNNConfig()  # published defaults
    mapped = build_attack("grnn", AttackConfig(iterations=42, lr=0.5, seed=3))
    assert mapped.config == GRNNConfig(iterations=42, seed=3)  # lr stays GRNN's 1e-4
    with pytest.raises(ValueError, match="takes an AttackConfig"):
        build_attack("dlg", GRNNConfig())
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        GRNNConfig(iterations=0)
