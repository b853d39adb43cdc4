"""The event pipeline every event dataset goes through: tonic event arrays -> optional
spatial downsampling (tonic ``Downsample``) -> ``ToFrame`` bins -> binary spike frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fl_sim.data.event_emulation import to_frames
from fl_sim.data.loaders.base import DataOptions


def downsampled_size(sensor_size: Sequence[int], factor: int) -> tuple[int, int]:
    """(width, height) after integer downsampling: pixel x maps to floor(x / factor)."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    return ((width - 1) // factor + 1, (height - 1) // factor + 1)


def event_frames(
    events: np.ndarray,
    sensor_size: Sequence[int],
    options: DataOptions,
    duration_us: int | None = None,
) -> torch.Tensor:
    """Binary spike frames [T, 2, H', W'] of one recording (T = ``options.frames``): 1 where
    a pixel saw at least one event of that polarity in the bin.

    ``sensor_size`` is the recording's (width, height[, polarities]); ``duration_us`` gives
    fixed bins over [0, duration) instead of tonic's span from first to last event.
    """
    import tonic.transforms  # lazy: tonic takes ~2 s to import

    size = (int(sensor_size[0]), int(sensor_size[1]))
    if options.downsample > 1:
        events = tonic.transforms.Downsample(spatial_factor=1.0 / options.downsample)(events)
        size = downsampled_size(size, options.downsample)
    counts = to_frames(events, size, n_time_bins=options.frames, duration_us=duration_us)
    return (counts > 0).to(torch.float32)
