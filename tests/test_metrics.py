"""Tests for fl_sim.evaluation.metrics: exact values for known perturbations, small images,
matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_sim.evaluation.metrics import (
    ImageMetrics,
    image_metrics,
    match_reconstructions,
    ssim_win_size,
)


def _image(c: int = 1, h: int = 28, w: int = 28, seed: int = 0) -> np.ndarray:
    """Random image in [0.2, 0.8] so a +/-0.1 offset is never clipped."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(c, h, w))


def test_identical_images_are_perfect() -> None:
    x = _image()
    m = image_metrics(x, x.copy())
    assert isinstance(m, ImageMetrics)
    assert m.mse == 0.0
    assert m.ssim == pytest.approx(1.0)
    assert math.isinf(m.psnr) and m.psnr > 0


def test_constant_offset_gives_known_mse_and_psnr() -> None:
    x = _image()
    m = image_metrics(x, x + 0.1)
    assert m.mse == pytest.approx(0.01, rel=1e-9)
    assert m.psnr == pytest.approx(20.0, abs=1e-6)
    assert 0.0 < m.ssim < 1.0


def test_recon_is_clipped_before_scoring() -> None:
    x = np.ones((1, 8, 8))
    m = image_metrics(x, np.full((1, 8, 8), 5.0))  # clips to 1.0 -> identical
    assert m.mse == 0.0
    assert math.isinf(m.psnr)


def test_noise_lowers_ssim() -> None:
    x = _image()
    noisy = x + np.random.default_rng(1).normal(0.0, 0.2, size=x.shape)
    m = image_metrics(x, noisy)
    assert m.ssim < 0.9
    assert m.mse > 0.01
    assert m.psnr < 20.0


def test_rgb_images() -> None:
    x = _image(c=3, h=32, w=32)
    assert image_metrics(x, x).ssim == pytest.approx(1.0)
    m = image_metrics(x, x - 0.1)
    assert m.mse == pytest.approx(0.01)
    assert m.psnr == pytest.approx(20.0, abs=1e-6)
    noisy = image_metrics(x, x + np.random.default_rng(2).normal(0, 0.2, x.shape))
    assert noisy.ssim < 0.9


def test_two_dimensional_input_is_single_channel() -> None:
    x = _image()[0]
    assert image_metrics(x, x + 0.1).mse == pytest.approx(0.01)


@pytest.mark.parametrize(("side", "win"), [(28, 7), (7, 7), (6, 5), (5, 5), (4, 3), (3, 3)])
def test_ssim_window_fits_small_images(side: int, win: int) -> None:
    assert ssim_win_size(side, side + 3) == win
    x = _image(h=side, w=side)
    assert image_metrics(x, x).ssim == pytest.approx(1.0)
    assert image_metrics(x, x + 0.1).ssim < 1.0


@pytest.mark.parametrize("side", [1, 2])
def test_ssim_tiny_images_fall_back_to_luminance(side: int) -> None:
    x = _image(h=side, w=side)
    assert ssim_win_size(side, side) == 1
    assert image_metrics(x, x).ssim == pytest.approx(1.0)
    assert image_metrics(x, x + 0.1).ssim < 1.0


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*\(1, 27, 28\)"):
        image_metrics(np.zeros((1, 28, 28)), np.zeros((1, 27, 28)))


def test_match_recovers_known_permutation() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.0, 1.0, size=(6, 1, 12, 12))
    order = np.array([4, 0, 5, 2, 1, 3])  # recon[j] = truth[order[j]] + noise
    recon = truth[order] + rng.normal(0.0, 0.05, size=truth.shape)
    perm = match_reconstructions(truth, recon)
    assert perm.dtype.kind == "i"
    assert sorted(perm.tolist()) == list(range(6))
    # recon[perm[i]] must be the noisy copy of truth[i]
    np.testing.assert_array_equal(order[perm], np.arange(6))
    np.testing.assert_array_equal(perm, np.argsort(order))


def test_match_single_and_identity() -> None:
    x = _image()[None]
    assert match_reconstructions(x, x).tolist() == [0]
    batch = np.stack([_image(seed=s) for s in range(4)])
    assert match_reconstructions(batch, batch).tolist() == [0, 1, 2, 3]


def test_match_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        match_reconstructions(np.zeros((2, 1, 4, 4)), np.zeros((3, 1, 4, 4)))
