"""Embedded offline datasets: lfw-subset (scikit-image's LFW crops) and nmnist-emulated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fl_sim.data.loaders.nmnist_emulated as nm
from fl_sim.data.event_emulation import DEFAULT_DURATION_US, DEFAULT_SENSOR_SIZE, emulate_events
from fl_sim.data.loaders.events import event_frames
from fl_sim.data.registry import DataOptions, clear_dataset_cache, load_dataset


def test_lfw_subset_is_scikit_images_crops_as_face_vs_non_face() -> None:
    from skimage.data import lfw_subset

    crops = np.asarray(lfw_subset(), dtype=np.float64)
    crops = crops / 255.0 if crops.max() > 1 else crops
    train, test = load_dataset("lfw-subset", "train"), load_dataset("lfw-subset", "test")
    assert (len(train), len(test)) == (160, 40)
    assert train.input_shape == (1, 25, 25) and train.kind == "image" and train.num_classes == 2
    for split, per_class in ((train, 80), (test, 20)):
        assert torch.bincount(split.labels).tolist() == [per_class, per_class]
    # Every crop appears exactly once over both splits, faces (the first 100) labelled 1.
    both = torch.cat([train.inputs, test.inputs])[:, 0].double().numpy()
    labels = torch.cat([train.labels, test.labels]).numpy()
    dist = ((both[:, None] - crops[None]) ** 2).sum(axis=(2, 3))
    source = dist.argmin(axis=1)
    assert np.allclose(dist.min(axis=1), 0, atol=1e-9)
    assert sorted(source.tolist()) == list(range(200))
    assert (labels == (source < 100)).all()
    assert train.labels[:20].unique().numel() == 2  # shuffled, not sorted by class


def test_nmnist_emulated_frames_are_the_event_pipeline_of_real_digits(tiny_digits) -> None:
    data = load_dataset("nmnist-emulated", "train")
    assert data.kind == "events" and data.inputs.shape == (12, 20, 2, 34, 34)
    assert torch.equal(data.labels, tiny_digits["train"].labels)
    assert set(data.inputs.unique().tolist()) <= {0.0, 1.0}
    # Sample 3 is exactly its digit's emulated events through the shared event pipeline.
    events = emulate_events(tiny_digits["train"].inputs[3, 0].numpy(), seed=nm.EMULATION_SEED + 3)
    expected = event_frames(events, DEFAULT_SENSOR_SIZE, DataOptions(), DEFAULT_DURATION_US)
    assert torch.equal(data.inputs[3], expected)
    # Both polarities fire in every one of the 20 bins (three saccades over 300 ms).
    assert bool((data.inputs.sum(dim=(3, 4)) > 0).all())


def test_nmnist_emulated_is_cached_on_disk_and_honours_options(
    tiny_digits, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    first = load_dataset("nmnist-emulated", "test", options=DataOptions(frames=5, downsample=2))
    assert first.inputs.shape == (12, 5, 2, 17, 17)
    cached = nm.cache_file("test", DataOptions(frames=5, downsample=2))
    assert cached.is_file() and cached.is_relative_to(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("emulated again although cached")

    monkeypatch.setattr(nm, "emulate_events", refuse)
    clear_dataset_cache()
    again = load_dataset("nmnist-emulated", "test", options=DataOptions(frames=5, downsample=2))
    assert torch.equal(again.inputs, first.inputs)
    # A corrupt cache file is recomputed, not trusted.
    cached.write_bytes(b"not an npz")
    monkeypatch.undo()
    monkeypatch.setattr(nm, "_mnist5k_splits", lambda: tiny_digits)
    monkeypatch.setenv("FL_SIM_CACHE", str(tmp_path))
    clear_dataset_cache()
    redone = load_dataset("nmnist-emulated", "test", options=DataOptions(frames=5, downsample=2))
    assert torch.equal(redone.inputs, first.inputs)


def test_data_options_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="frames must be an integer >= 1, got 0"):
        DataOptions(frames=0)
    with pytest.raises(ValueError, match="downsample must be an integer >= 1"):
        DataOptions(downsample=1.5)  # type: ignore[arg-type]
