"""Tests for fl_sim.federation.partition: flwr-datasets backed client partitions and
replayable batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl_sim.federation.partition import PARTITION_SCHEMES, partition_indices, sample_batch

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """2000 labels, 200 per class, in a shuffled order (like a real training split)."""
    return np.random.default_rng(7).permutation(np.repeat(np.arange(NUM_CLASSES), 200))


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    """Partitions are sorted int64, non-empty, disjoint and together cover 0..n-1."""
    for part in parts:
        assert part.dtype == np.int64
        assert part.ndim == 1
        assert len(part) > 0
        assert np.array_equal(part, np.sort(part))
    merged = np.concatenate(parts)
    assert len(merged) == n
    assert np.array_equal(np.sort(merged), np.arange(n))


def _mean_max_class_fraction(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean over partitions of the share of the partition's most common class (1.0 = one class)."""
    return float(
        np.mean([np.bincount(labels[p], minlength=NUM_CLASSES).max() / len(p) for p in parts])
    )


def test_iid_is_an_exact_balanced_cover(labels: np.ndarray) -> None:
    for num_partitions in (1, 3, 7, 10):
        parts = partition_indices(labels, num_partitions, "iid", seed=0)
        assert len(parts) == num_partitions
        _assert_exact_cover(parts, len(labels))
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1


def test_iid_is_seeded_and_shuffled(labels: np.ndarray) -> None:
    first = partition_indices(labels, 5, "iid", seed=3)
    again = partition_indices(torch.from_numpy(labels), 5, "iid", seed=3)
    other = partition_indices(labels, 5, "iid", seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    # Shuffled, not contiguous blocks of the original order.
    assert not np.array_equal(first[0], np.arange(len(first[0])))
    assert first[0].max() - first[0].min() > len(first[0])


def test_iid_keeps_classes_mixed(labels: np.ndarray) -> None:
    parts = partition_indices(labels, 10, "iid", seed=0)
    for part in parts:
        assert len(np.unique(labels[part])) == NUM_CLASSES
    assert _mean_max_class_fraction(labels, parts) < 0.2


def test_dirichlet_is_far_more_skewed_than_iid(labels: np.ndarray) -> None:
    iid_skew = np.mean(
        [
            _mean_max_class_fraction(labels, partition_indices(labels, 10, "iid", seed=s))
            for s in range(3)
        ]
    )
    dirichlet_skew = []
    for seed in range(3):
        parts = partition_indices(labels, 10, "dirichlet", alpha=0.1, seed=seed)
        assert len(parts) == 10
        _assert_exact_cover(parts, len(labels))
        dirichlet_skew.append(_mean_max_class_fraction(labels, parts))
    # Measured: IID ~0.13, Dirichlet(0.1) ~0.65-0.72 on this data (seeds 0-2).
    assert iid_skew < 0.2
    assert np.mean(dirichlet_skew) > iid_skew + 0.25
    assert min(dirichlet_skew) > 0.35


def test_dirichlet_is_seeded(labels: np.ndarray) -> None:
    first = partition_indices(labels, 4, "dirichlet", alpha=0.5, seed=1)
    again = partition_indices(labels, 4, "dirichlet", alpha=0.5, seed=1)
    other = partition_indices(labels, 4, "dirichlet", alpha=0.5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_small_dataset_gives_every_client_data() -> None:
    small = np.arange(40) % NUM_CLASSES
    for seed in range(5):
        parts = partition_indices(small, 10, "dirichlet", alpha=0.1, seed=seed)
        _assert_exact_cover(parts, len(small))


def test_dirichlet_min_partition_size(labels: np.ndarray) -> None:
    parts = partition_indices(labels, 10, "dirichlet", alpha=0.3, seed=0, min_partition_size=32)
    assert min(len(p) for p in parts) >= 32


def test_dirichlet_impossible_request_fails_fast() -> None:
    # 10 samples over 10 clients with strong skew almost never gives everyone one sample;
    # flwr-datasets gives up after a bounded number of resamples instead of looping.
    with pytest.raises(ValueError, match="could not make 10 'dirichlet' partitions"):
        partition_indices(np.zeros(10, dtype=np.int64), 10, "dirichlet", alpha=0.01, seed=0)


def test_partition_argument_errors(labels: np.ndarray) -> None:
    n = len(labels)
    with pytest.raises(
        ValueError, match=r"unknown partition scheme 'shards'.*\['dirichlet', 'iid'\]"
    ):
        partition_indices(labels, 2, "shards")
    assert sorted(PARTITION_SCHEMES) == ["dirichlet", "iid"]
    for bad in (0, -1, n + 1):
        with pytest.raises(ValueError, match=rf"num_partitions must be an integer in \[1, {n}\]"):
            partition_indices(labels, bad)
    for bad_alpha in (0.0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            partition_indices(labels, 2, "dirichlet", alpha=bad_alpha)
    with pytest.raises(ValueError, match="labels must be 1-D"):
        partition_indices(labels.reshape(2, -1), 2)
    with pytest.raises(ValueError, match="seed must be"):
        partition_indices(labels, 2, seed=-1)
    with pytest.raises(ValueError, match=r"min_partition_size must be an integer in \[1, 1000\]"):
        partition_indices(labels, 2, "dirichlet", min_partition_size=1001)


def test_num_partitions_equal_to_n_is_allowed() -> None:
    parts = partition_indices(np.arange(6) % 2, 6, "iid", seed=0)
    assert sorted(int(p[0]) for p in parts) == list(range(6))
    assert all(len(p) == 1 for p in parts)


def test_sample_batch_is_a_pure_function() -> None:
    indices = np.arange(100, 300, 2, dtype=np.int64)
    batch = sample_batch(indices, 16, seed=5, server_round=3, partition_id=2)
    assert batch.dtype == np.int64
    assert batch.shape == (16,)
    assert len(np.unique(batch)) == 16
    assert np.isin(batch, indices).all()
    assert np.array_equal(batch, sample_batch(indices.copy(), 16, 5, 3, 2))


def test_sample_batch_varies_with_round_partition_and_seed() -> None:
    indices = np.arange(1000, dtype=np.int64)
    base = sample_batch(indices, 8, seed=0, server_round=1, partition_id=0)
    variants = [
        sample_batch(indices, 8, seed=0, server_round=2, partition_id=0),
        sample_batch(indices, 8, seed=0, server_round=1, partition_id=1),
        sample_batch(indices, 8, seed=1, server_round=1, partition_id=0),
    ]
    for other in variants:
        assert not np.array_equal(np.sort(base), np.sort(other))
    rounds = {tuple(sample_batch(indices, 8, 0, r, 0)) for r in range(1, 21)}
    assert len(rounds) == 20


def test_sample_batch_whole_partition_and_single() -> None:
    indices = np.array([9, 4, 17], dtype=np.int64)
    assert sorted(sample_batch(indices, 3, 0, 1, 0).tolist()) == [4, 9, 17]
    assert sample_batch(indices, 1, 0, 1, 0)[0] in indices


def test_sample_batch_errors() -> None:
    indices = np.arange(10)
    for bad in (0, -3, 11):
        with pytest.raises(ValueError, match=rf"batch_size must be in \[1, 10\].*got {bad}"):
            sample_batch(indices, bad, 0, 1, 0)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 0\]"):
        sample_batch(np.array([], dtype=np.int64), 1, 0, 1, 0)
    with pytest.raises(ValueError, match="duplicates"):
        sample_batch(np.array([1, 1, 2]), 2, 0, 1, 0)
    with pytest.raises(ValueError, match="server_round must be"):
        sample_batch(indices, 2, 0, -1, 0)
