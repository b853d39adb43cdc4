"""Emulate a neuromorphic (DVS) camera recording a static image, N-MNIST style.

N-MNIST (Orchard et al. 2015, "Converting static image datasets to spiking neuromorphic datasets
using saccades", Front. Neurosci. 9:437) was recorded by moving an ATIS sensor in three saccades
along a triangle in front of a monitor showing each MNIST digit, on a 34x34 pixel window. This
module reproduces that recording in software, the way the DVS emulators ESIM (Rebecq et al. 2018,
"ESIM: an open event camera simulator", CoRL) and v2e (Hu et al. 2021, "v2e: From video frames to
realistic DVS events", CVPR Workshops) turn intensity frames into events:

1. the image is centred on the sensor (zero padding, the dark monitor) and shifted with sub-pixel
   accuracy (bilinear interpolation) along :func:`saccade_path`;
2. every pixel sees the log intensity ``log(eps + I)`` (``eps`` plays the role of v2e's linear
   part of its lin-log curve and keeps dark pixels finite), linearly interpolated between steps;
3. a pixel emits an ON event (``p=1``) each time its log intensity has risen by the contrast
   threshold above its reference level and an OFF event (``p=0``) each time it has fallen by it,
   several per step if several thresholds were crossed, each timestamped at its interpolated
   crossing time (ESIM); the reference moves by one threshold per event;
4. optionally the ON and OFF thresholds vary per pixel (Gaussian mismatch, seeded, clipped at
   0.01 as in v2e) and a refractory period drops events that follow a pixel's last emitted event
   too closely (the reference still advances, as a DVS pixel is reset during that time).

Not modelled: shot noise, leak events, photoreceptor bandwidth, the monitor's refresh.

Events come back as a structured array with the dtype of ``tonic.datasets.NMNIST``
(``x, y, t, p``, int64, ``t`` in microseconds), sorted by ``t``; :func:`to_frames` bins them with
``tonic.transforms.ToFrame`` exactly as a tonic DVS dataset would be binned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

EVENT_DTYPE: np.dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
"""Event dtype, identical to ``tonic.datasets.NMNIST.dtype`` (tonic 1.7): x, y, t (us), p."""

DEFAULT_SENSOR_SIZE: tuple[int, int] = (34, 34)
"""(width, height) of the N-MNIST sensor window (tonic's ``NMNIST.sensor_size[:2]``)."""

DEFAULT_DURATION_US: int = 300_000
"""Length of the emulated recording: three saccades of 100 ms, as in N-MNIST."""

DEFAULT_AMPLITUDE_PX: float = 3.0
"""Side of the square bounding the saccade triangle, in pixels (28x28 digit on 34x34 sensor)."""

DEFAULT_CONTRAST_THRESHOLD: float = 0.2
"""Log-intensity change that triggers one event (v2e's default ON/OFF threshold)."""

DEFAULT_STEPS: int = 300
"""Time steps at which the shifted image is rendered (1 ms each by default)."""

DEFAULT_EPS: float = 0.1
"""Offset in ``log(eps + I)``; bounds the dynamic range of an image in [0, 1] to log(11)."""

MIN_THRESHOLD: float = 0.01
"""Lower clip of a pixel's threshold under mismatch (as in v2e)."""


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: object, minimum: float, strict: bool) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > minimum if strict else v >= minimum)
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {rel} {minimum}, got {value!r}")
    return v


def _check_sensor_size(sensor_size: Sequence[int]) -> tuple[int, int]:
    """Accept tonic's (W, H) or (W, H, 2); return (W, H)."""
    try:
        dims = tuple(sensor_size)
    except TypeError:
        dims = ()
    good = len(dims) in (2, 3) and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in dims
    )
    if good and len(dims) == 3 and dims[2] != 2:
        good = False
    if not good:
        raise ValueError(
            "sensor_size must be (width, height) or (width, height, 2) with positive integers "
            f"(tonic's convention), got {sensor_size!r}"
        )
    return int(dims[0]), int(dims[1])


def saccade_path(
    duration_us: int = DEFAULT_DURATION_US,
    t_us: np.ndarray | Sequence[float] | float = 0.0,
    amplitude_px: float = DEFAULT_AMPLITUDE_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (dx, dy) in pixels at times ``t_us`` of the N-MNIST three-saccade triangle.

    The path visits bottom-left (-A/2, +A/2), top (0, -A/2), bottom-right (+A/2, +A/2) and returns
    to bottom-left (x to the right, y downwards, A = ``amplitude_px``), in three straight
    segments of ``duration_us / 3`` each at constant speed. Returns two float arrays shaped like
    ``t_us``.
    """
    duration = _check_int("duration_us", duration_us, 1)
    amp = _check_float("amplitude_px", amplitude_px, 0.0, strict=False)
    t = np.asarray(t_us, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t > duration):
        bad = t[~(np.isfinite(t) & (t >= 0) & (t <= duration))]
        raise ValueError(
            f"t_us must lie in [0, duration_us={duration}], got values such as {bad.flat[0]!r}"
        )
    h = amp / 2.0
    vx = np.array([-h, 0.0, h, -h])
    vy = np.array([h, -h, h, h])
    knots = np.array([0.0, 1.0, 2.0, 3.0]) * duration / 3.0
    return np.interp(t, knots, vx), np.interp(t, knots, vy)


def _render(canvas: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Shift ``canvas`` [H, W] by (dx[k], dy[k]) with bilinear interpolation, zeros outside.

    Output pixel (y, x) of frame k samples the canvas at (y - dy[k], x - dx[k]). Returns
    [K, H, W] float64.
    """
    h, w = canvas.shape
    margin = int(math.ceil(max(np.abs(dx).max(initial=0.0), np.abs(dy).max(initial=0.0)))) + 2
    big = np.pad(canvas, margin)
    ys = np.arange(h)
    xs = np.arange(w)
    out = np.empty((len(dx), h, w))
    for k, (sx, sy) in enumerate(zip(dx, dy, strict=True)):
        px, py = -sx, -sy  # sampling offset
        x0, y0 = math.floor(px), math.floor(py)
        fx, fy = px - x0, py - y0
        rows = ys + y0 + margin
        cols = xs + x0 + margin
        a = big[np.ix_(rows, cols)]
        b = big[np.ix_(rows, cols + 1)]
        c = big[np.ix_(rows + 1, cols)]
        d = big[np.ix_(rows + 1, cols + 1)]
        out[k] = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)
    return out


def emulate_events(
    image: np.ndarray,
    sensor_size: Sequence[int] = DEFAULT_SENSOR_SIZE,
    contrast_threshold: float = DEFAULT_CONTRAST_THRESHOLD,
    threshold_sigma: float = 0.0,
    refractory_us: int = 0,
    duration_us: int = DEFAULT_DURATION_US,
    steps: int = DEFAULT_STEPS,
    amplitude_px: float = DEFAULT_AMPLITUDE_PX,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
) -> np.ndarray:
    """Events of a DVS sensor making the N-MNIST saccades in front of ``image``.

    ``image`` is [H, W] with values in [0, 1], at most the sensor's size; it is centred on a
    ``sensor_size`` = (width, height) sensor (tonic's order). ``contrast_threshold`` is in log
    intensity; ``threshold_sigma`` is the standard deviation of the per-pixel ON and OFF
    thresholds (0 = no mismatch; drawn from ``seed``). ``refractory_us`` drops events closer than
    that to the pixel's previous emitted event. Returns a structured array with
    :data:`EVENT_DTYPE`, sorted by ``t``, with ``0 <= t < duration_us``.
    """
    width, height = _check_sensor_size(sensor_size)
    theta = _check_float("contrast_threshold", contrast_threshold, 0.0, strict=True)
    sigma = _check_float("threshold_sigma", threshold_sigma, 0.0, strict=False)
    refractory = _check_int("refractory_us", refractory_us, 0)
    duration = _check_int("duration_us", duration_us, 1)
    n_steps = _check_int("steps", steps, 1)
    if n_steps > duration:
        raise ValueError(f"steps must be <= duration_us={duration} (>= 1 us each), got {steps!r}")
    amp = _check_float("amplitude_px", amplitude_px, 0.0, strict=False)
    eps_ = _check_float("eps", eps, 0.0, strict=True)
    seed_ = _check_int("seed", seed, 0)

    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array [H, W], got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise ValueError(f"image must hold real numbers, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)) or img.min() < 0.0 or img.max() > 1.0:
        raise ValueError(
            "image values must be finite and in [0, 1], got range "
            f"[{np.nanmin(img)!r}, {np.nanmax(img)!r}]"
        )
    if img.shape[0] > height or img.shape[1] > width:
        raise ValueError(
            f"image shape {img.shape} (H, W) does not fit the sensor (width={width}, "
            f"height={height})"
        )

    canvas = np.zeros((height, width))
    top = (height - img.shape[0]) // 2
    left = (width - img.shape[1]) // 2
    canvas[top : top + img.shape[0], left : left + img.shape[1]] = img

    times = np.arange(n_steps + 1) * (duration / n_steps)
    dx, dy = saccade_path(duration, times, amp)
    log_i = np.log(eps_ + _render(canvas, dx, dy))  # [K+1, H, W]

    rng = np.random.default_rng(seed_)
    shape = (height, width)
    if sigma > 0:
        th_on = np.maximum(MIN_THRESHOLD, theta + sigma * rng.standard_normal(shape))
        th_off = np.maximum(MIN_THRESHOLD, theta + sigma * rng.standard_normal(shape))
    else:
        th_on = np.full(shape, theta)
        th_off = np.full(shape, theta)

    ref = log_i[0].copy()
    chunks: list[tuple[np.ndarray, ...]] = []
    for k in range(1, n_steps + 1):
        prev, cur = log_i[k - 1], log_i[k]
        for polarity, sign, th in ((1, 1.0, th_on), (0, -1.0, th_off)):
            rise = sign * (cur - ref)  # > 0 towards this polarity
            n = np.floor(rise / th).astype(np.int64)
            n[rise < th] = 0  # guards the floor against rounding
            yy, xx = np.nonzero(n > 0)
            if yy.size == 0:
                continue
            counts = n[yy, xx]
            ry = np.repeat(yy, counts)
            rx = np.repeat(xx, counts)
            starts = np.cumsum(counts) - counts
            j = np.arange(counts.sum()) - np.repeat(starts, counts) + 1  # 1..n per pixel
            level = ref[ry, rx] + sign * j * th[ry, rx]
            frac = (level - prev[ry, rx]) / (cur[ry, rx] - prev[ry, rx])
            frac = np.clip(frac, 0.0, 1.0)
            t = times[k - 1] + frac * (times[k] - times[k - 1])
            chunks.append((rx, ry, t, np.full(rx.size, polarity)))
            ref[yy, xx] += sign * counts * th[yy, xx]

    if not chunks:
        return np.zeros(0, dtype=EVENT_DTYPE)
    x = np.concatenate([c[0] for c in chunks])
    y = np.concatenate([c[1] for c in chunks])
    t = np.minimum(np.floor(np.concatenate([c[2] for c in chunks])), duration - 1)
    p = np.concatenate([c[3] for c in chunks])
    order = np.argsort(t, kind="stable")
    events = np.zeros(x.size, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    if refractory > 0:
        events = _apply_refractory(events, width, refractory)
    return events


def _apply_refractory(events: np.ndarray, width: int, refractory_us: int) -> np.ndarray:
    """Drop events within ``refractory_us`` of the same pixel's previous kept event."""
    keep = np.zeros(events.size, dtype=bool)
    last: dict[int, int] = {}
    pix = (events["y"] * width + events["x"]).tolist()
    for i, (key, t) in enumerate(zip(pix, events["t"].tolist(), strict=True)):
        prev = last.get(key)
        if prev is None or t - prev >= refractory_us:
            keep[i] = True
            last[key] = t
    return events[keep]


def to_frames(
    events: np.ndarray,
    sensor_size: Sequence[int] = DEFAULT_SENSOR_SIZE,
    n_time_bins: int = 20,
    duration_us: int | None = None,
) -> torch.Tensor:
    """Bin events into a float32 tensor [T, 2, H, W] with ``tonic.transforms.ToFrame``.

    With ``duration_us=None`` this is exactly ``ToFrame(sensor_size=(W, H, 2),
    n_time_bins=...)``, the binning used for tonic's DVS datasets; note that tonic then spans
    the bins from the first to the last event with a floor-divided width and leaves out events
    at or after ``t0 + n_time_bins * ((t_last - t0) // n_time_bins)``, the last event always
    among them. With ``duration_us`` the bins are fixed windows of ``ceil(duration_us /
    n_time_bins)`` us from t=0 (``ToFrame(time_window=..., start_time=0, end_time=...)``), so
    every event in [0, duration_us) is counted and bins align across recordings.
    """
    import tonic.transforms  # lazy: tonic takes ~2 s to import

    width, height = _check_sensor_size(sensor_size)
    bins = _check_int("n_time_bins", n_time_bins, 1)
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        got = getattr(events, "dtype", type(events).__name__)
        raise ValueError(f"events must be a structured array with fields x, y, t, p, got {got}")
    missing = [f for f in ("x", "y", "t", "p") if f not in events.dtype.names]
    if missing:
        raise ValueError(f"events lack the fields {missing}; dtype is {events.dtype}")
    if events.size:
        if events["x"].min() < 0 or events["x"].max() >= width:
            raise ValueError(
                f"events x range [{events['x'].min()}, {events['x'].max()}] is outside "
                f"[0, {width - 1}] of sensor width {width}"
            )
        if events["y"].min() < 0 or events["y"].max() >= height:
            raise ValueError(
                f"events y range [{events['y'].min()}, {events['y'].max()}] is outside "
                f"[0, {height - 1}] of sensor height {height}"
            )
        bad_p = np.setdiff1d(np.unique(events["p"].astype(np.int64)), [0, 1])
        if bad_p.size:
            raise ValueError(f"event polarities must be 0 or 1, got {bad_p.tolist()}")
        if np.any(np.diff(events["t"]) < 0):
            raise ValueError("events must be sorted by t")
    tensor_shape = (bins, 2, height, width)
    if events.size == 0:  # tonic returns [T, P, W, H] for empty input: avoid it
        return torch.zeros(tensor_shape, dtype=torch.float32)

    if duration_us is None:
        transform = tonic.transforms.ToFrame(sensor_size=(width, height, 2), n_time_bins=bins)
    else:
        duration = _check_int("duration_us", duration_us, 1)
        if events["t"].min() < 0 or events["t"].max() >= duration:
            raise ValueError(
                f"event times [{events['t'].min()}, {events['t'].max()}] are outside "
                f"[0, duration_us={duration})"
            )
        window = -(-duration // bins)
        transform = tonic.transforms.ToFrame(
            sensor_size=(width, height, 2),
            time_window=window,
            start_time=0,
            end_time=window * bins,
        )
    frames = transform(events)
    if frames.shape != tensor_shape:  # defensive: tonic's slicing rules changed
        raise RuntimeError(f"tonic ToFrame returned shape {frames.shape}, expected {tensor_shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32)
