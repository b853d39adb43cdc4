"""Reconstruction-quality metrics for gradient-inversion attacks (MSE, PSNR, SSIM).

All images are float arrays in [0, 1] laid out as [C, H, W] (a bare [H, W] is taken as C=1).
Reconstructions are clipped to [0, 1] before scoring, since attacks optimise unconstrained pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

__all__ = [
    "ImageMetrics",
    "image_metrics",
    "match_reconstructions",
    "sample_metrics",
    "spike_l2",
    "ssim_win_size",
]

_DEFAULT_WIN = 7


@dataclass(frozen=True)
class ImageMetrics:
    """Quality of one reconstruction against its ground truth (psnr is inf for a perfect one)."""

    mse: float
    psnr: float
    ssim: float


def _as_chw(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as float64 [C, H, W]; a 2-D image gets a channel axis."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be [C, H, W] (or [H, W]), got shape {np.shape(x)}")
    return arr


def ssim_win_size(height: int, width: int) -> int:
    """SSIM window: 7 when both sides are >= 7, else the largest odd size <= the smaller side."""
    side = min(height, width)
    if side < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    if side >= _DEFAULT_WIN:
        return _DEFAULT_WIN
    return side if side % 2 == 1 else side - 1


def image_metrics(truth: np.ndarray, recon: np.ndarray) -> ImageMetrics:
    """Score one reconstruction [C, H, W] against the ground truth with scikit-image.

    ``recon`` is clipped to [0, 1]; ``data_range`` is 1.0. PSNR of identical images is ``inf``
    (kept, not capped). SSIM uses a 7x7 window; for images with a side smaller than 7 the
    window is the largest odd size that fits (5 or 3), and for sides of 1-2 pixels it falls
    back to a 1x1 window with population statistics, i.e. SSIM's luminance term only.
    Raises ValueError on a shape mismatch.
    """
    _check_same_shape(truth, recon)
    t = _as_chw(truth, "truth")
    r = np.clip(_as_chw(recon, "recon"), 0.0, 1.0)
    mse, psnr = _mse_psnr(t, r)
    return ImageMetrics(mse=mse, psnr=psnr, ssim=_ssim(t, r))


def _check_same_shape(truth: np.ndarray, recon: np.ndarray) -> None:
    if np.shape(truth) != np.shape(recon):
        raise ValueError(f"shape mismatch: truth {np.shape(truth)} vs recon {np.shape(recon)}")


def _mse_psnr(t: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """MSE and PSNR (data range 1; inf for identical arrays) of float64 arrays in [0, 1]."""
    mse = float(mean_squared_error(t, r))
    if mse == 0.0:
        return mse, float("inf")
    return mse, float(peak_signal_noise_ratio(t, r, data_range=1.0))


def _ssim(t: np.ndarray, r: np.ndarray) -> float:
    """SSIM of two [C, H, W] images in [0, 1], window as in :func:`image_metrics`."""
    win = ssim_win_size(t.shape[1], t.shape[2])
    kwargs: dict[str, object] = {"data_range": 1.0, "win_size": win}
    if win == 1:
        # Sample covariance over a single pixel divides by zero; use population stats.
        kwargs["use_sample_covariance"] = False
    if t.shape[0] == 1:
        ssim = structural_similarity(t[0], r[0], **kwargs)
    else:
        ssim = structural_similarity(t, r, channel_axis=0, **kwargs)
    return float(ssim)


def match_reconstructions(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Pair unordered batch reconstructions with ground truths by minimum total MSE.

    Both arrays are [N, C, H, W]; returns integer ``perm`` with ``recon[perm[i]]`` matched to
    ``truth[i]`` (Hungarian algorithm, recon clipped to [0, 1]). N=1 gives ``[0]``.
    """
    t = np.asarray(truth, dtype=np.float64)
    r = np.asarray(recon, dtype=np.float64)
    if t.shape != r.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs recon {r.shape}")
    if t.ndim < 2:
        raise ValueError(f"expected a batch [N, C, H, W], got shape {t.shape}")
    n = t.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    tf = t.reshape(n, -1)
    rf = np.clip(r.reshape(n, -1), 0.0, 1.0)
    cost = ((tf[:, None, :] - rf[None, :, :]) ** 2).mean(axis=2)  # cost[i, j] = MSE(t_i, r_j)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(n, dtype=np.intp)
    perm[rows] = cols
    return perm


def spike_l2(truth: np.ndarray, recon: np.ndarray) -> float:
    """l2 distance of two spike tensors of one sample, e.g. [T,C,H,W] event frames: the
    paper's fidelity measure for sparse binary sequences, where MSE/PSNR/SSIM mislead."""
    _check_same_shape(truth, recon)
    return float(np.linalg.norm((truth.astype(np.float64) - recon.astype(np.float64)).ravel()))


def sample_metrics(truth: np.ndarray, recon: np.ndarray) -> ImageMetrics:
    """MSE/PSNR/SSIM of one sample: an image [C,H,W], or event frames [T,C,H,W], whose MSE
    and PSNR cover every spike and whose SSIM compares the frames averaged over T."""
    if np.ndim(truth) != 4:
        return image_metrics(truth, recon)
    _check_same_shape(truth, recon)
    t = np.asarray(truth, dtype=np.float64)
    r = np.clip(np.asarray(recon, dtype=np.float64), 0.0, 1.0)
    mse, psnr = _mse_psnr(t, r)
    return ImageMetrics(mse=mse, psnr=psnr, ssim=_ssim(t.mean(0), r.mean(0)))
