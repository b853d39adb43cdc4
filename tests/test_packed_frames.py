"""Event frames stored as bits: unpacked per batch to exactly the float32 frames of before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fl_sim.data.loaders.nmnist_emulated as nm
from fl_sim.data.event_emulation import DEFAULT_DURATION_US, DEFAULT_SENSOR_SIZE, emulate_events
from fl_sim.data.loaders.events import event_frames
from fl_sim.data.loaders.frames import PackedFrames, read_packed, write_packed
from fl_sim.data.registry import DataOptions, DataSplit, clear_dataset_cache, load_dataset


def _binary(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < 0.3).to(torch.float32)


def test_packed_frames_unpack_to_the_same_float32_for_every_kind_of_index(tmp_path) -> None:
    frames = _binary((7, 3, 2, 5, 3))  # 90 values per sample: the last byte is padded
    packed = PackedFrames.pack(frames)
    assert packed.bits.shape == (7, 12) and packed.bits.dtype == np.uint8
    indices = (
        3, -1, slice(None), slice(2, 5), slice(4, 4), [6, 0, 6],
        torch.tensor([1, 5], dtype=torch.long), np.array([2, 3]),
    )  # fmt: skip
    for index in indices:
        got = packed.take(index)
        assert got.dtype == torch.float32
        assert torch.equal(got, frames[index]), index
    assert torch.equal(packed.to_float(chunk=2), frames)
    # The file cache holds the same bits and comes back memory-mapped.
    path = tmp_path / "frames.npy"
    write_packed(path, packed)
    mapped = read_packed(path, frames.shape)
    assert mapped is not None and isinstance(mapped.bits, np.memmap)
    assert torch.equal(mapped.take(slice(None)), frames)
    assert read_packed(path, (7, 3, 2, 5, 4)) is None  # another shape: not this cache
    assert read_packed(tmp_path / "absent.npy", frames.shape) is None


def test_packing_refuses_frames_that_are_not_binary() -> None:
    counts = _binary((2, 2, 2, 4, 4))
    counts[0, 1, 0, 2, 2] = 2.0  # an event count: bits would clip it, so refuse
    with pytest.raises(ValueError, match="other than 0 and 1"):
        PackedFrames.pack(counts)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        PackedFrames.pack(torch.full((1, 1, 1, 2, 2), 0.5))


def test_data_split_take_equals_inputs_for_images_float_and_packed_events() -> None:
    labels = torch.arange(5, dtype=torch.int64) % 2
    frames = _binary((5, 4, 2, 3, 3), seed=1)
    images = torch.rand(5, 1, 4, 4)
    for split in (
        DataSplit("ev", frames, labels, 2),
        DataSplit("bits", PackedFrames.pack(frames), labels, 2),
        DataSplit("img", images, labels, 2),
    ):
        whole = images if split.name == "img" else frames
        assert split.shape == tuple(whole.shape) and len(split) == 5
        assert torch.equal(split.take(torch.tensor([4, 1])), whole[[4, 1]])
        assert torch.equal(split.inputs, whole)
        assert split.inputs is split.inputs  # unpacked once, then kept
    packed = DataSplit("bits", PackedFrames.pack(frames), labels, 2)
    assert packed.packed is not None and packed.kind == "events" and packed.time_steps == 4
    assert packed.input_shape == (2, 3, 3)
    with pytest.raises(ValueError, match="differ in length"):
        DataSplit("bits", PackedFrames.pack(frames), labels[:4], 2)


def test_nmnist_emulated_split_is_packed_memory_mapped_and_bit_identical(tiny_digits) -> None:
    data = load_dataset("nmnist-emulated", "train")
    assert data.packed is not None and isinstance(data.packed.bits, np.memmap)
    path = nm.cache_file("train", DataOptions())
    assert path.suffix == ".npy"
    assert np.load(path).shape == (12, 20 * 2 * 34 * 34 // 8)
    # Every digit: the float32 frames of the event pipeline, exactly (as stored before).
    for i in range(len(data)):
        image = tiny_digits["train"].inputs[i, 0].numpy()
        events = emulate_events(image, seed=nm.EMULATION_SEED + i)
        expected = event_frames(
            events, DEFAULT_SENSOR_SIZE, DataOptions(), duration_us=DEFAULT_DURATION_US
        )
        assert torch.equal(data.take(i), expected)
    index = torch.tensor([11, 0, 5, 5])
    assert torch.equal(data.take(index), data.inputs[index])


def test_a_cache_in_the_npz_layout_is_converted_without_emulating(
    tiny_digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DataOptions(frames=4, downsample=3)
    fresh = load_dataset("nmnist-emulated", "test", options=options).inputs
    nm.cache_file("test", options).unlink()
    # The layout-1 writer: bits of the whole split in one .npz, with its shape.
    legacy = nm.cache_file("test", options, fmt=1)
    bits = np.packbits(fresh.numpy().astype(np.uint8).ravel())
    np.savez(legacy, bits=bits, shape=np.asarray(fresh.shape, dtype=np.int64))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("emulated again although a cache existed")

    monkeypatch.setattr(nm, "emulate_events", refuse)
    clear_dataset_cache()
    converted = load_dataset("nmnist-emulated", "test", options=options)
    assert converted.packed is not None
    assert torch.equal(converted.inputs, fresh)
    assert nm.cache_file("test", options).is_file()
