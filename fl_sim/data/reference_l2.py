"""Reference l2 distances of a dataset split: intra- and inter-class pairwise statistics.

The paper (Table VI) reads reconstructions' l2 distances against the natural variability of
the data: how far apart two real samples of one class, or of two classes, already are. The
distance is :func:`fl_sim.evaluation.metrics.spike_l2`'s: the Euclidean norm of the
flattened difference of two samples (float64). Distances are computed blockwise,
cdist-style (one float64 matmul per pair of row blocks), so memory stays bounded (two row
blocks and one distance block) even for event data.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fl_sim.data.loaders.base import SPLITS, DataSplit

if TYPE_CHECKING:
    from fl_sim.data.config import DataConfig

CHUNK_BYTES: int = 256 * 2**20
"""Memory budget of one float64 row block when ``chunk_size`` is not given."""

REFINE_RATIO: float = 1e-6
"""Pairs with d^2 <= REFINE_RATIO * (|a|^2 + |b|^2) are recomputed as |a - b| (exact zeros)."""

MAX_CHUNK_ROWS: int = 2048
"""Upper bound of the automatic block size (the distance block is rows x rows float64)."""


@dataclass(frozen=True)
class L2Stats:
    """Statistics of one set of pairwise distances (``std`` is the population std, ddof=0)."""

    pairs: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class AveragedL2Stats:
    """Unweighted average over ``classes`` classes of each per-class statistic."""

    classes: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class ClassL2:
    """One class: its intra-class pairs, and inter-class pairs with one sample in the class.

    ``intra`` is None when the class has fewer than 2 samples; ``inter`` is None when no other
    class has samples.
    """

    label: int
    samples: int
    intra: L2Stats | None
    inter: L2Stats | None


@dataclass(frozen=True)
class ReferenceL2:
    """Intra-/inter-class l2 statistics of a (possibly subsampled) dataset split.

    ``intra_avg``/``inter_avg`` are Table VI's "averaged over all classes": for each of mean,
    std, min and max, the unweighted arithmetic mean of that statistic over the classes that
    have it (so e.g. the averaged min is the mean of the per-class minima, not a global min).
    A class's inter statistics cover every pair with exactly one sample in that class, so each
    inter pair counts in both of its classes. ``intra_pooled``/``inter_pooled`` are statistics
    over all unordered pairs of distinct samples, each pair once. Classes with fewer than 2
    samples are left out of ``intra_avg`` (listed in ``intra_skipped``); classes with no
    samples are left out of both averages (listed in ``absent``).
    """

    dataset: str
    split: str | None
    kind: str
    sample_shape: tuple[int, ...]
    total_samples: int  # in the split, before subsampling
    samples: int  # used
    per_class: int | None  # cap on samples per class (None: all)
    seed: int  # of the per-class subsample
    num_classes: int
    classes: tuple[ClassL2, ...]  # classes with at least one sample used, by label
    intra_avg: AveragedL2Stats | None
    inter_avg: AveragedL2Stats | None
    intra_pooled: L2Stats | None
    inter_pooled: L2Stats | None
    intra_skipped: tuple[int, ...]  # labels with exactly 1 sample used: no intra pairs
    absent: tuple[int, ...]  # labels in range(num_classes) with no sample used
    seconds: float  # time of the distance computation (without loading the data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (nested dataclasses become dicts, tuples lists)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Accumulator:
    """Running count/mean/M2/min/max of distances, merged blockwise (Chan et al.): exact
    enough in float64 without keeping every distance."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: torch.Tensor) -> None:
        """Merge a 1-D float64 tensor of distances."""
        n_b = int(values.numel())
        if n_b == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def merge(self, other: _Accumulator) -> None:
        """Fold another accumulator's distances into this one."""
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def stats(self) -> L2Stats | None:
        if self.n == 0:
            return None
        std = math.sqrt(max(self.m2, 0.0) / self.n)
        return L2Stats(self.n, self.mean, std, self.min, self.max)


def check_per_class(per_class: int | None) -> None:
    """Reject a per-class cap that is not None or an integer >= 2 (2 make one intra pair)."""
    if per_class is None:
        return
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 2:
        raise ValueError(
            f"per_class must be an integer >= 2 (samples per class) or None (all), "
            f"got {per_class!r}"
        )


def subsample_per_class(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of at most ``per_class`` samples of each class, drawn without replacement
    with ``numpy.random.default_rng(seed)`` (classes in label order); all indices if None."""
    check_per_class(per_class)
    n = int(labels.shape[0])
    if per_class is None:
        return torch.arange(n)
    y = labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) > per_class:
            members = rng.choice(members, size=per_class, replace=False)
        keep.append(members)
    picked = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(picked.astype(np.int64))


def auto_chunk_size(features: int) -> int:
    """Rows per block so that one float64 row block fits :data:`CHUNK_BYTES`."""
    return max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (8 * max(features, 1))))


def reference_l2(
    data: DataSplit,
    per_class: int | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    split: str | None = None,
) -> ReferenceL2:
    """Intra-/inter-class l2 statistics of ``data`` (optionally at most ``per_class`` samples
    per class, seeded), computed in blocks of ``chunk_size`` rows (default: automatic)."""
    check_per_class(per_class)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size must be an integer >= 1 or None (automatic), got {chunk_size!r}"
        )
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {list(SPLITS)}")
    start = time.perf_counter()
    idx = subsample_per_class(data.labels, per_class, seed)
    idx = idx[torch.argsort(data.labels[idx], stable=True)]  # classes contiguous
    labels = data.labels[idx]
    n, features = int(idx.numel()), math.prod(data.shape[1:])
    rows = chunk_size or auto_chunk_size(features)
    present = [int(c) for c in torch.unique(labels).tolist()]
    # pair[(a, b)], a <= b: distances of unordered pairs with one sample of class a, one of b
    pair: dict[tuple[int, int], _Accumulator] = {}

    def block(lo: int) -> torch.Tensor:
        return data.take(idx[lo : lo + rows]).reshape(-1, features).to(torch.float64)

    def runs(y: torch.Tensor) -> list[tuple[int, int, int]]:
        """(class, first, end) of each run of one class in a block's sorted labels."""
        values, counts = torch.unique_consecutive(y, return_counts=True)
        counts_list = counts.tolist()
        ends = torch.cumsum(counts, 0).tolist()
        triples = zip(values.tolist(), counts_list, ends, strict=True)
        return [(int(c), int(e - k), int(e)) for c, k, e in triples]

    sq = torch.cat(
        [block(lo).square_().sum(1) for lo in range(0, n, rows)]
        or [torch.zeros(0, dtype=torch.float64)]
    )
    for i0 in range(0, n, rows):
        xi, sq_i, runs_i = block(i0), sq[i0 : i0 + rows], runs(labels[i0 : i0 + rows])
        for j0 in range(i0, n, rows):
            xj = xi if j0 == i0 else block(j0)
            sq_j, runs_j = sq[j0 : j0 + rows], runs(labels[j0 : j0 + rows])
            d = _distances(xi, xj, sq_i, sq_j)
            for a, r0, r1 in runs_i:
                for b, c0, c1 in runs_j:
                    rect = d[r0:r1, c0:c1]
                    if j0 == i0:  # each unordered pair of distinct samples once
                        if a > b:  # sorted labels: below the diagonal, seen as (b, a)
                            continue
                        if a == b:  # a square on the diagonal: its strict upper triangle
                            k = torch.triu_indices(r1 - r0, c1 - c0, offset=1)
                            rect = rect[k[0], k[1]]
                    pair.setdefault((min(a, b), max(a, b)), _Accumulator()).add(rect.reshape(-1))

    intra = {c: pair.get((c, c), _Accumulator()) for c in present}
    inter = {c: _Accumulator() for c in present}
    intra_all, inter_all = _Accumulator(), _Accumulator()
    for (a, b), acc in sorted(pair.items()):
        if a == b:
            intra_all.merge(acc)
        else:
            inter_all.merge(acc)
            inter[a].merge(acc)
            inter[b].merge(acc)

    counts = torch.bincount(labels, minlength=data.num_classes).tolist()
    classes = tuple(ClassL2(c, int(counts[c]), intra[c].stats(), inter[c].stats()) for c in present)
    return ReferenceL2(
        dataset=data.name,
        split=split,
        kind=data.kind,
        sample_shape=data.shape[1:],
        total_samples=len(data),
        samples=n,
        per_class=per_class,
        seed=seed,
        num_classes=data.num_classes,
        classes=classes,
        intra_avg=_average([k.intra for k in classes]),
        inter_avg=_average([k.inter for k in classes]),
        intra_pooled=intra_all.stats(),
        inter_pooled=inter_all.stats(),
        intra_skipped=tuple(k.label for k in classes if k.intra is None),
        absent=tuple(c for c in range(data.num_classes) if c not in intra),
        seconds=time.perf_counter() - start,
    )


def _distances(
    xi: torch.Tensor, xj: torch.Tensor, sq_i: torch.Tensor, sq_j: torch.Tensor
) -> torch.Tensor:
    """float64 l2 distances of two row blocks with squared norms ``sq_i``/``sq_j``: the
    sqrt(|a|^2+|b|^2-2ab) form of ``torch.cdist(..., compute_mode="use_mm_for_euclid_dist")``
    (one matmul; cdist itself copies augmented blocks and is ~5x slower on event data), exact
    for binary events. Pairs much closer than their norms (e.g. duplicates, where that form
    cancels to ~1e-7 instead of 0) are recomputed directly from their difference."""
    d2 = torch.addmm(sq_i[:, None] + sq_j[None, :], xi, xj.T, beta=1.0, alpha=-2.0)
    close = (d2 <= REFINE_RATIO * (sq_i[:, None] + sq_j[None, :])).nonzero()
    d = d2.clamp_min_(0.0).sqrt_()  # in place: d2 is d from here on
    step = max(1, xi.shape[0])  # at most one row block of differences at a time
    for k in range(0, close.shape[0], step):
        p, q = close[k : k + step].unbind(1)
        d[p, q] = (xi[p] - xj[q]).norm(dim=1)
    return d


def _average(stats: list[L2Stats | None]) -> AveragedL2Stats | None:
    """Unweighted mean over classes of each statistic, over the classes that have them."""
    have = [s for s in stats if s is not None]
    if not have:
        return None
    k = len(have)
    return AveragedL2Stats(
        classes=k,
        mean=sum(s.mean for s in have) / k,
        std=sum(s.std for s in have) / k,
        min=sum(s.min for s in have) / k,
        max=sum(s.max for s in have) / k,
    )


def reference_l2_for_config(
    data: DataConfig,
    seed: int,
    split: str,
    per_class: int | None = None,
    chunk_size: int | None = None,
) -> ReferenceL2:
    """:func:`reference_l2` of a run config's dataset split (its data options; ``seed``, the
    run's, draws the subsample)."""
    from fl_sim.data.splits import dataset_split

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {list(SPLITS)}")
    check_per_class(per_class)
    return reference_l2(dataset_split(data, split), per_class, seed, chunk_size, split)


def format_table(result: ReferenceL2, per_class_rows: bool = True) -> str:
    """Table VI layout (Type, Mean, Std., Min, Max): the class averages, the pooled pairs and,
    if ``per_class_rows``, every class; with notes on what was averaged and skipped."""

    def row(name: str, s: L2Stats | AveragedL2Stats | None, extra: str) -> str:
        if s is None:
            return f"{name:<22}{'-':>9}{'-':>9}{'-':>9}{'-':>9}  {extra}"
        return f"{name:<22}{s.mean:>9.2f}{s.std:>9.2f}{s.min:>9.2f}{s.max:>9.2f}  {extra}"

    def avg_note(s: AveragedL2Stats | None) -> str:
        return f"avg over {s.classes} classes" if s else "no pairs"

    def pairs(s: L2Stats | None) -> str:
        return f"{s.pairs} pairs" if s else "no pairs"

    cap = f"<= {result.per_class} per class, seed {result.seed}" if result.per_class else "all"
    lines = [
        f"Reference l2 distances: {result.dataset} {result.split or ''} ({result.kind}, "
        f"sample {'x'.join(map(str, result.sample_shape))}); {result.samples} of "
        f"{result.total_samples} samples ({cap})",
        f"{'Type':<22}{'Mean':>9}{'Std.':>9}{'Min':>9}{'Max':>9}",
        row("Intra-class", result.intra_avg, avg_note(result.intra_avg)),
        row("Inter-class", result.inter_avg, avg_note(result.inter_avg)),
        row("Intra-class (pooled)", result.intra_pooled, pairs(result.intra_pooled)),
        row("Inter-class (pooled)", result.inter_pooled, pairs(result.inter_pooled)),
    ]
    if per_class_rows:
        for k in result.classes:
            note = f"{k.samples} samples, {pairs(k.intra)}"
            lines.append(row(f"  class {k.label} intra", k.intra, note))
            lines.append(row(f"  class {k.label} inter", k.inter, pairs(k.inter)))
    lines.append(
        "Averages: unweighted mean over classes of each per-class statistic; std is the "
        "population std of the pairs."
    )
    if result.intra_skipped:
        lines.append(
            f"Intra average skips class(es) {list(result.intra_skipped)}: fewer than 2 samples."
        )
    if result.absent:
        lines.append(f"No samples of class(es) {list(result.absent)}: left out of both averages.")
    return "\n".join(lines)
