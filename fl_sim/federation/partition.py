"""Client partitions (via flwr-datasets partitioners) and the per-round batch each client uses.

Both are pure functions of their arguments, so a separate auditor can replay exactly which
samples a client trained on in a given round (the ground truth for gradient inversion).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable

import datasets
import numpy as np
import torch
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, Partitioner

PartitionerBuilder = Callable[[datasets.Dataset, int, float, int, int], Partitioner]
"""(dataset, num_partitions, alpha, seed, min_partition_size) -> partitioner bound to dataset."""

DIRICHLET_SELF_BALANCING: bool = True
"""Stop giving samples to a client once it holds more than the average: keeps client sizes
comparable (fewer near-empty clients) while the per-client label mix stays skewed."""


def _build_iid(
    dataset: datasets.Dataset, num_partitions: int, alpha: float, seed: int, min_size: int
) -> Partitioner:
    """Seeded IID: shuffle with ``seed``, then cut into contiguous, equal-sized shards."""
    del alpha, min_size  # IID shards differ by at most one sample; alpha is meaningless here
    partitioner = IidPartitioner(num_partitions=num_partitions)
    # IidPartitioner itself takes no seed and shards contiguously, so shuffle first.
    partitioner.dataset = dataset.shuffle(seed=seed)
    return partitioner


def _build_dirichlet(
    dataset: datasets.Dataset, num_partitions: int, alpha: float, seed: int, min_size: int
) -> Partitioner:
    """Label-skewed non-IID: per-class client shares drawn from Dirichlet(alpha)."""
    partitioner = DirichletPartitioner(
        num_partitions=num_partitions,
        partition_by="label",
        alpha=alpha,
        min_partition_size=min_size,
        self_balancing=DIRICHLET_SELF_BALANCING,
        shuffle=True,
        seed=seed,
    )
    partitioner.dataset = dataset
    return partitioner


PARTITION_SCHEMES: dict[str, PartitionerBuilder] = {
    "iid": _build_iid,
    "dirichlet": _build_dirichlet,
}
"""Registry of partition scheme name -> partitioner builder."""


def _labels_to_numpy(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Accept numpy or torch labels; return a 1-D numpy array."""
    array = (
        labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    )
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    return array


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [low, high], else raise ValueError."""
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be an integer {allowed}, got {number}")
    return number


def partition_indices(
    labels: np.ndarray | torch.Tensor,
    num_partitions: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    *,
    min_partition_size: int = 1,
) -> list[np.ndarray]:
    """Split dataset indices ``0..N-1`` among ``num_partitions`` clients.

    Returns one sorted int64 index array per partition (disjoint, covering all indices).
    ``alpha`` is the Dirichlet concentration (smaller = more label skew; ignored by "iid");
    ``min_partition_size`` is the fewest samples any Dirichlet client may get (flwr-datasets
    resamples up to 11 times, then this raises ValueError).
    """
    if scheme not in PARTITION_SCHEMES:
        raise ValueError(
            f"unknown partition scheme {scheme!r}; valid schemes: {sorted(PARTITION_SCHEMES)}"
        )
    array = _labels_to_numpy(labels)
    n = len(array)
    if n == 0:
        raise ValueError("labels is empty; there is nothing to partition")
    num_partitions = _check_int("num_partitions", num_partitions, 1, n)
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not (math.isfinite(alpha) and alpha > 0)
    ):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    seed = _check_int("seed", seed, 0)
    min_partition_size = _check_int(
        "min_partition_size", min_partition_size, 1, n // num_partitions
    )

    dataset = datasets.Dataset.from_dict({"index": np.arange(n, dtype=np.int64), "label": array})
    partitioner = PARTITION_SCHEMES[scheme](
        dataset, num_partitions, float(alpha), seed, min_partition_size
    )
    with warnings.catch_warnings():
        # flwr-datasets warns on every Dirichlet resample; a final failure raises below.
        warnings.filterwarnings("ignore", message="The specified min_partition_size")
        try:
            parts = [
                np.sort(np.asarray(partitioner.load_partition(pid)["index"], dtype=np.int64))
                for pid in range(num_partitions)
            ]
        except ValueError as err:
            raise ValueError(
                f"could not make {num_partitions} {scheme!r} partitions of {n} samples with "
                f"alpha={alpha} and at least {min_partition_size} sample(s) each; increase "
                f"alpha, lower num_partitions or use another seed ({err})"
            ) from err
    covered = np.sort(np.concatenate(parts))
    if not np.array_equal(covered, np.arange(n)):  # guards against degenerate Dirichlet draws
        raise RuntimeError(f"{scheme!r} partitioning did not cover each index exactly once")
    return parts


def sample_batch(
    indices: np.ndarray, batch_size: int, seed: int, server_round: int, partition_id: int
) -> np.ndarray:
    """Draw the ``batch_size`` distinct indices a client trains on in ``server_round``.

    A pure function of its arguments (RNG seeded with ``[seed, server_round, partition_id]``),
    so an auditor can replay the exact batch. Returned in draw order, as int64.
    """
    pool = np.asarray(indices)
    if pool.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {pool.shape}")
    if len(np.unique(pool)) != len(pool):
        raise ValueError("indices must not contain duplicates")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or not 1 <= batch_size <= len(pool)
    ):
        raise ValueError(
            f"batch_size must be in [1, {len(pool)}] (the partition has {len(pool)} samples), "
            f"got {batch_size}"
        )
    seed = _check_int("seed", seed, 0)
    server_round = _check_int("server_round", server_round, 0)
    partition_id = _check_int("partition_id", partition_id, 0)
    rng = np.random.default_rng([seed, server_round, partition_id])
    return rng.choice(pool, size=int(batch_size), replace=False).astype(np.int64, copy=False)
