"""experiments.attacker_strength: its CI math on known values, option errors, the victims of
one digit sharing their weights, and a smoke run (files, rows, last lines; not attack quality)."""

from __future__ import annotations

import csv
import math
import re
import sqlite3
from pathlib import Path

import pytest
import torch

from attacks import ATTACKS
from attacks.registry import CHAINS
from experiments import attacker_strength as strength
from experiments.cells import EXPERIMENT_DB
from experiments.trials import fresh_victim
from fl_sim.federation.run_config import RunConfig
from fl_sim.results.report import read_rows
from fl_sim.results.stats import Z95, t_interval, wilson_interval


def test_wilson_interval_on_known_values() -> None:
    # Wilson score interval, z = 1.959964: 8/10 -> [0.4902, 0.9433], 0/10 -> [0, 0.2775],
    # 10/10 -> [0.7225, 1] (the roots of (p - k/n)^2 = z^2 p (1 - p) / n), n = 0 -> nan.
    assert wilson_interval(8, 10) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277532), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722468, 1.0), abs=1e-6)
    for n in range(1, 120):  # exactly 1 / 0 at the ends (a plot's error bars need lo <= p <= hi)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
        assert all(lo <= k / n <= hi for k in range(n + 1) for lo, hi in [wilson_interval(k, n)])
    lo, hi = wilson_interval(17, 30)  # symmetric around the Wilson centre
    centre = (17 / 30 + Z95**2 / 60) / (1 + Z95**2 / 30)
    assert (lo + hi) / 2 == pytest.approx(centre)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_t_interval_on_known_values() -> None:
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445: half width 1.963243
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (mean, lo, hi) == pytest.approx((3.0, 1.036757, 4.963243), abs=1e-6)
    # nan cells (failed attacks) are left out; one value has no interval
    assert t_interval([2.0, math.nan, 4.0]) == pytest.approx(
        (3.0, 3.0 - 12.706205, 3.0 + 12.706205), abs=1e-5
    )
    mean, lo, hi = t_interval([0.5, math.nan])
    assert mean == 0.5 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(x) for x in t_interval([]))
    assert t_interval([0.25] * 4) == (0.25, 0.25, 0.25)
    # cut to the metric's range: mean 0.7, half width 4.302653 * 0.435890 / sqrt(3) = 1.082811
    assert t_interval([0.9, 1.0, 0.2], bounds=(-1.0, 1.0)) == pytest.approx(
        (0.7, 0.7 - 1.082811, 1.0), abs=1e-6
    )


def test_victim_names_and_defaults() -> None:
    assert strength.parse_victim("ann") == strength.Victim("ann", "ann")
    assert strength.parse_victim("snn-lif-T16") == strength.Victim("snn-lif-T16", "snn", "lif", 16)
    for bad in ("snn", "snn-if-T0", "snn-foo-T4", "snn-if-4", "cnn"):
        with pytest.raises(ValueError, match="valid: ann, snn-if-T<steps>, snn-lif-T<steps>"):
            strength.parse_victim(bad)
    assert "grnn" not in strength.default_attacks()
    assert set(strength.default_attacks()) == set(ATTACKS) - {"grnn", *CHAINS}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attacks", "idlg,nope"], r"unknown attack\(s\) nope; valid: .*idlg"),
        (["--victims", "ann,snn-if-T"], r"unknown victim 'snn-if-T'; valid: ann, snn-if-T<steps>"),
        (["--samples", "0"], r"--samples must be in 1\.\.\d+, got 0"),
        (["--set", "protocol=fedavg"], r"FedSGD gradient of one digit"),
        (["--set", "nokey=1"], r"unknown config key\(s\) nokey"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        strength.main([*args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_every_victim_of_a_digit_starts_from_the_same_weights() -> None:
    cfg = RunConfig()
    ann, _ = fresh_victim(strength.parse_victim("ann").config(cfg), "ann", 7)
    for name in ("snn-if-T4", "snn-lif-T8"):
        victim = strength.parse_victim(name)
        snn, public = fresh_victim(victim.config(cfg), "snn", 7)
        assert (public.T, public.neuron) == (victim.T, victim.neuron)
        a, s = ann.state_dict(), snn.state_dict()
        assert list(a) == list(s) and all(torch.equal(a[k], s[k]) for k in a)


def test_smoke_run(tmp_path: Path, judge_cache: str, capsys: pytest.CaptureFixture[str]) -> None:
    attacks = [a for a in ("idlg", "ig") if a in ATTACKS]
    out = tmp_path / "strength"
    argv = ["--samples", "2", "--out", str(out), "--workers", "1", "--victims", "ann,snn-if-T4"]
    argv += ["--attacks", ",".join(attacks), "--set", "iterations=2", "--set", "judge_epochs=1"]
    strength.main([*argv, "--set", f"cache_dir={judge_cache}"])
    lines = capsys.readouterr().out.strip().splitlines()

    for name in ("leakage.csv", "strength.csv", "strength.md", "summary.txt"):
        assert (out / name).is_file(), name
    for victim in ("ann", "snn-if-T4"):
        assert (out / f"grid_{victim}.png").stat().st_size > 0
    rows = read_rows(out / "leakage.csv")
    assert len(rows) == 2 * 2 * len(attacks)
    assert {r["arm"] for r in rows} == {"ann", "snn-if-T4"}
    with (out / "strength.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["victim"], r["attack"]) for r in table] == [
        (v, a) for v in ("ann", "snn-if-T4") for a in attacks
    ]
    assert all(r["n"] == "2" and float(r["chance_pct"]) == 10.0 for r in table)
    assert "chance 10.0%" in (out / "strength.md").read_text()
    progress = r"attacker_strength: (\d)/4 cells, \S+ elapsed, (ETA \S+|done) \((\S+) #\d+, .*\)"
    done = [m for m in map(re.compile(progress).fullmatch, lines) if m]
    assert sorted(int(m[1]) for m in done) == [1, 2, 3, 4] and done[-1][2] == "done"
    best = "best=(" + "|".join(attacks) + r") ssim=(-?\d+\.\d{3}|nan) asr=\d+\.\d%"
    assert re.fullmatch(r"ann " + best, lines[-2]), lines[-2]
    assert re.fullmatch(r"snn-if-T4 " + best, lines[-1]), lines[-1]

    with pytest.raises(SystemExit) as exc:  # an existing experiment is refused
        strength.main([*argv, "--set", f"cache_dir={judge_cache}"])
    assert exc.value.code == 2 and "pass --resume" in capsys.readouterr().err

    # a kill before the last cell's commit: --resume runs only that cell
    with sqlite3.connect(out / EXPERIMENT_DB) as db:
        (cell, trial), *_ = db.execute("SELECT cell, trial FROM trials ORDER BY rowid DESC")
        db.execute("DELETE FROM rows WHERE cell = ? AND trial = ?", (cell, trial))
        db.execute("DELETE FROM trials WHERE cell = ? AND trial = ?", (cell, trial))
    db.close()
    strength.main([*argv, "--resume", "--set", f"cache_dir={judge_cache}"])
    lines = capsys.readouterr().out.splitlines()
    assert "attacker_strength: 4 cells, 3 stored, 1 to run with 1 worker(s)" in lines
    assert [ln for ln in lines if re.fullmatch(progress, ln)] == [
        ln for ln in lines if "4/4 cells" in ln and f"({cell} #{trial}," in ln
    ]  # one cell ran, the missing one
    again = read_rows(out / "leakage.csv")
    key = ("arm", "attack", "client", "sample")
    assert sorted(tuple(r[k] for k in key) for r in again) == sorted(
        tuple(r[k] for k in key) for r in rows
    )  # 0 lost, 0 duplicated

    with pytest.raises(SystemExit) as exc:  # other settings are not pooled
        strength.main([*argv, "--resume", "--samples", "3", "--set", f"cache_dir={judge_cache}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "samples: stored 2, now 3" in err, err
