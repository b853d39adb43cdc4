"""Reference l2 statistics (Table VI): exact small cases, chunking, subsampling, the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fl_sim.cli import main
from fl_sim.data.config import DataConfig
from fl_sim.data.loaders.base import DataSplit
from fl_sim.data.reference_l2 import (
    AveragedL2Stats,
    L2Stats,
    format_table,
    reference_l2,
    reference_l2_for_config,
    subsample_per_class,
)
from fl_sim.data.registry import load_dataset
from fl_sim.evaluation.metrics import spike_l2


def split_of(points: list[list[float]], labels: list[int], num_classes: int) -> DataSplit:
    """A DataSplit of 2-pixel "images" [N,1,1,2] at the given points."""
    x = torch.tensor(points, dtype=torch.float32).reshape(len(points), 1, 1, -1)
    return DataSplit("toy", x, torch.tensor(labels, dtype=torch.int64), num_classes)


def brute_force(data: DataSplit) -> dict[str, object]:
    """Every statistic from a plain loop over pairs with metrics.spike_l2 (the leakage l2)."""
    x, y = data.inputs.numpy(), data.labels.tolist()
    intra: dict[int, list[float]] = {c: [] for c in set(y)}
    inter: dict[int, list[float]] = {c: [] for c in set(y)}
    pooled: dict[str, list[float]] = {"intra": [], "inter": []}
    for i, j in itertools.combinations(range(len(y)), 2):
        d = spike_l2(x[i], x[j])
        if y[i] == y[j]:
            intra[y[i]].append(d)
            pooled["intra"].append(d)
        else:
            inter[y[i]].append(d)
            inter[y[j]].append(d)
            pooled["inter"].append(d)

    def stats(v: list[float]) -> tuple[float, ...] | None:
        return (len(v), np.mean(v), np.std(v), min(v), max(v)) if v else None

    return {
        "intra": {c: stats(v) for c, v in intra.items()},
        "inter": {c: stats(v) for c, v in inter.items()},
        "pooled": {k: stats(v) for k, v in pooled.items()},
    }


def as_tuple(s: L2Stats | AveragedL2Stats | None) -> tuple[float, ...] | None:
    if s is None:
        return None
    first = s.pairs if isinstance(s, L2Stats) else s.classes
    return (first, s.mean, s.std, s.min, s.max)


def test_three_samples_two_classes_exact() -> None:
    # a=(0,0), b=(3,4) in class 0; c=(6,8) in class 1: |ab|=5, |ac|=10, |bc|=5.
    r = reference_l2(split_of([[0, 0], [3, 4], [6, 8]], [0, 0, 1], 2))
    assert r.samples == 3 and r.total_samples == 3
    k0, k1 = r.classes
    assert (k0.label, k0.samples, k1.label, k1.samples) == (0, 2, 1, 1)
    assert as_tuple(k0.intra) == (1, 5.0, 0.0, 5.0, 5.0)
    assert k1.intra is None  # one sample: no intra pair
    assert as_tuple(k0.inter) == (2, 7.5, 2.5, 5.0, 10.0)
    assert as_tuple(k1.inter) == (2, 7.5, 2.5, 5.0, 10.0)
    assert as_tuple(r.intra_avg) == (1, 5.0, 0.0, 5.0, 5.0)  # class 1 skipped
    assert as_tuple(r.inter_avg) == (2, 7.5, 2.5, 5.0, 10.0)
    assert as_tuple(r.intra_pooled) == (1, 5.0, 0.0, 5.0, 5.0)
    assert as_tuple(r.inter_pooled) == (2, 7.5, 2.5, 5.0, 10.0)
    assert r.intra_skipped == (1,) and r.absent == ()
    assert "skips class(es) [1]: fewer than 2 samples" in format_table(r)


def test_four_samples_averages_are_unweighted_over_classes() -> None:
    # class 0: (0,0),(3,4) -> 5;  class 1: (0,1),(0,3) -> 2
    # inter: ac=1, ad=3, bc=sqrt(18), bd=sqrt(10)
    r = reference_l2(split_of([[0, 0], [3, 4], [0, 1], [0, 3]], [0, 0, 1, 1], 3))
    assert as_tuple(r.intra_avg) == (2, 3.5, 0.0, 3.5, 3.5)
    inter = [1.0, 3.0, math.sqrt(18), math.sqrt(10)]
    expected = (4, np.mean(inter), np.std(inter), 1.0, math.sqrt(18))
    assert as_tuple(r.inter_pooled) == pytest.approx(expected, abs=1e-12)
    assert as_tuple(r.inter_avg) == pytest.approx((2, *expected[1:]), abs=1e-12)
    assert as_tuple(r.intra_pooled) == pytest.approx((2, 3.5, 1.5, 2.0, 5.0), abs=1e-12)
    assert r.absent == (2,) and r.intra_skipped == ()
    assert "No samples of class(es) [2]" in format_table(r)


def test_matches_brute_force_with_spike_l2_and_chunking_changes_nothing() -> None:
    g = torch.Generator().manual_seed(3)
    events = (torch.rand(23, 3, 2, 4, 4, generator=g) < 0.3).float()  # [N,T,2,H,W] binary
    labels = torch.tensor([0] * 9 + [1] * 7 + [2] * 6 + [3], dtype=torch.int64)
    labels = labels[torch.randperm(23, generator=g)]
    data = DataSplit("ev", events, labels, 5)
    want = brute_force(data)
    whole = reference_l2(data, chunk_size=1000)
    for chunk in (1, 4, 7):
        r = reference_l2(data, chunk_size=chunk)
        for a, b in zip(r.classes, whole.classes, strict=True):
            assert as_tuple(a.intra) == pytest.approx(as_tuple(b.intra), abs=1e-9)
            assert as_tuple(a.inter) == pytest.approx(as_tuple(b.inter), abs=1e-9)
        assert as_tuple(r.intra_avg) == pytest.approx(as_tuple(whole.intra_avg), abs=1e-9)
        assert as_tuple(r.inter_pooled) == pytest.approx(as_tuple(whole.inter_pooled), abs=1e-9)
    for k in whole.classes:
        assert as_tuple(k.intra) == pytest.approx(want["intra"][k.label], abs=1e-9)
        assert as_tuple(k.inter) == pytest.approx(want["inter"][k.label], abs=1e-9)
    assert as_tuple(whole.intra_pooled) == pytest.approx(want["pooled"]["intra"], abs=1e-9)
    assert as_tuple(whole.inter_pooled) == pytest.approx(want["pooled"]["inter"], abs=1e-9)
    assert whole.intra_skipped == (3,) and whole.absent == (4,)
    assert whole.intra_avg is not None and whole.intra_avg.classes == 3
    assert whole.inter_avg is not None and whole.inter_avg.classes == 4
    assert whole.kind == "events" and whole.sample_shape == (3, 2, 4, 4)


def test_subsample_per_class_is_seeded_and_bounded() -> None:
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 6, dtype=torch.int64)
    a = subsample_per_class(labels, 4, seed=1)
    assert torch.equal(a, subsample_per_class(labels, 4, seed=1))
    assert not torch.equal(a, subsample_per_class(labels, 4, seed=2))
    assert torch.equal(a, a.sort().values) and len(set(a.tolist())) == len(a)
    assert torch.bincount(labels[a]).tolist() == [4, 3, 4]
    assert torch.equal(subsample_per_class(labels, None, seed=1), torch.arange(19))
    data = DataSplit("toy", torch.rand(19, 1, 2, 2), labels, 3)
    r = reference_l2(data, per_class=4, seed=1)
    assert r.samples == 11 and r.total_samples == 19 and r.per_class == 4
    assert [k.samples for k in r.classes] == [4, 3, 4]
    assert r.intra_pooled is not None and r.intra_pooled.pairs == 6 + 3 + 6


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5, "10", True])
def test_invalid_per_class_is_rejected(bad: object) -> None:
    data = split_of([[0, 0], [1, 1]], [0, 1], 2)
    with pytest.raises(ValueError, match=r"per_class must be an integer >= 2.*got"):
        reference_l2(data, per_class=bad)  # type: ignore[arg-type]


def test_invalid_split_and_chunk_size_are_rejected() -> None:
    data = split_of([[0, 0], [1, 1]], [0, 1], 2)
    with pytest.raises(ValueError, match=r"unknown split 'val'; allowed splits: \['train'"):
        reference_l2_for_config(DataConfig(), 0, "val")
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1.*got 0"):
        reference_l2(data, chunk_size=0)


def test_cli_prints_table_and_writes_matching_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "l2.json"
    argv = ["l2-stats", "--split", "test", "--per-class", "6", "--set", "seed=3"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Type" in printed and "Intra-class" in printed and "Inter-class" in printed
    assert "60 samples, 150 intra + 1620 inter pairs" in printed
    saved = json.loads(out.read_text())
    want = reference_l2(load_dataset("mnist5k", "test"), per_class=6, seed=3, split="test")
    expected = want.to_dict()
    saved.pop("seconds"), expected.pop("seconds")
    assert saved == json.loads(json.dumps(expected))
    assert saved["intra_avg"]["classes"] == 10 and saved["seed"] == 3
    assert f"{want.intra_avg.mean:.2f}" in printed  # type: ignore[union-attr]


def test_cli_rejects_bad_split_and_per_class(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["l2-stats", "--split", "val"])
    assert err.value.code == 2 and "invalid choice: 'val'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["l2-stats", "--split", "test", "--per-class", "1"])
    assert err.value.code == 2 and "per_class must be an integer >= 2" in capsys.readouterr().err


def test_duplicates_have_distance_exactly_zero() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 28, 28, generator=g)
    x = torch.cat([x, x[:5]])  # 5 duplicate pairs, float pixels
    labels = torch.cat([torch.arange(40) % 2, torch.arange(5) % 2])
    r = reference_l2(DataSplit("dup", x, labels, 2), chunk_size=16)
    assert r.intra_pooled is not None and r.intra_pooled.min == 0.0
    assert all(k.intra is not None and k.intra.min == 0.0 for k in r.classes)
    assert r.inter_pooled is not None and r.inter_pooled.min > 1.0
    want = brute_force(DataSplit("dup", x, labels, 2))
    assert as_tuple(r.intra_pooled) == pytest.approx(want["pooled"]["intra"], abs=1e-9)
