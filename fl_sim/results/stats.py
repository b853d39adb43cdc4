"""Confidence intervals of leakage statistics: Wilson for rates (ASR, label accuracy),
Student-t for means of per-sample metrics (SSIM, MSE, l2), cut to the metric's range."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
Z95 = 1.959963984540054  # standard normal quantile at 0.975


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (z = 1.96: 95%); (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval holds p; float rounding could leave a bound a hair inside it (at 0 or n).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def t_interval(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of the non-nan ``values``,
    ``mean -+ t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with the sample standard deviation s,
    cut to ``bounds`` (the metric's range, where the mean must lie); the bounds are nan for
    fewer than 2 values, everything nan for none."""
    vals = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if vals.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(vals.mean())
    if vals.size < 2:
        return mean, math.nan, math.nan
    half = float(
        scipy.stats.t.ppf((1 + confidence) / 2, vals.size - 1)
        * vals.std(ddof=1)
        / math.sqrt(vals.size)
    )
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


# the range of each per-digit metric: SSIM, MSE of [0, 1] images (reconstruction clipped), l2
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "ssim": (-1.0, 1.0),
    "mse": (0.0, 1.0),
    "l2": (0.0, math.inf),
}
