"""Tests for fl_sim.results.report: CSV durability/round-trip, PNG outputs and summary numbers."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from fl_sim.results.report import (
    LEAKAGE_COLUMNS,
    append_rows,
    by_round,
    plot_rounds,
    read_rows,
    save_grid,
    summary_table,
    write_report,
)
from fl_sim.results.stats import t_interval, wilson_interval


def _row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "arm": "ann",
        "round": 1,
        "client": 0,
        "attack": "dlg",
        "sample": 0,
        "label_true": 7,
        "label_pred": 7,
        "label_correct": True,
        "judge_pred": 7,
        "judge_correct": True,
        "mse": 0.0123456789012345,
        "psnr": 19.08,
        "ssim": 0.95,
        "l2": 1.5,
        "grad_loss": 1e-7,
        "status": "ok",
        "seconds": 3.5,
    }
    row.update(overrides)
    return row


def test_csv_round_trip_types(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "leakage.csv"
    rows = [
        _row(),
        _row(
            round=2,
            sample=1,
            label_correct=False,
            judge_correct=np.bool_(False),
            psnr=float("inf"),
            mse=np.float32(0.25),
            client=np.int64(3),
            status="diverged",
        ),
    ]
    append_rows(path, rows)
    back = read_rows(path)
    assert len(back) == 2
    assert list(back[0]) == list(LEAKAGE_COLUMNS)
    first, second = back
    assert first["mse"] == 0.0123456789012345  # repr precision, exact
    assert first["grad_loss"] == 1e-7
    assert first["label_correct"] == 1 and first["judge_correct"] == 1
    assert isinstance(first["round"], int) and isinstance(first["label_true"], int)
    assert isinstance(first["ssim"], float)
    assert first["arm"] == "ann" and first["status"] == "ok"
    assert second["label_correct"] == 0 and second["judge_correct"] == 0
    assert math.isinf(second["psnr"]) and second["psnr"] > 0  # type: ignore[arg-type]
    assert second["mse"] == 0.25
    assert second["client"] == 3
    text = path.read_text()
    assert "True" not in text and "False" not in text


def test_header_written_once(tmp_path: Path) -> None:
    path = tmp_path / "leakage.csv"
    path.touch()  # empty existing file still gets a header
    for r in range(3):
        append_rows(path, [_row(round=r), _row(round=r, sample=1)])
    append_rows(path, [])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(LEAKAGE_COLUMNS)
    assert sum(line.startswith("arm,") for line in lines) == 1
    assert len(lines) == 1 + 6
    assert [r["round"] for r in read_rows(path)] == [0, 0, 1, 1, 2, 2]


def test_missing_and_unknown_columns_rejected(tmp_path: Path) -> None:
    path = tmp_path / "leakage.csv"
    row = _row()
    del row["ssim"]
    with pytest.raises(ValueError, match="ssim"):
        append_rows(path, [row])
    with pytest.raises(ValueError, match="bogus"):
        append_rows(path, [_row(bogus=1)])
    # a bad row anywhere in the batch writes nothing
    with pytest.raises(ValueError):
        append_rows(path, [_row(), _row(extra=2)])
    assert not path.exists() or path.stat().st_size == 0


def test_foreign_header_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        append_rows(path, [_row()])


def _assert_nontrivial_png(path: Path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert not np.all(img == img.flat[0])
    return img


@pytest.mark.parametrize("channels", [1, 3])
def test_save_grid(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, size=(3, channels, 16, 16))
    recons = {"dlg": truth + rng.normal(0, 0.3, truth.shape), "idlg": truth * 2 - 0.5}
    path = tmp_path / "grids" / "round1.png"
    save_grid(path, truth, recons, ["c0 s0 y=7", "c0 s1 y=2", "c1 s0 y=1"], "round 1")
    img = _assert_nontrivial_png(path)
    assert img.shape[0] > 200  # three rows of images


def test_save_grid_single_sample_and_errors(tmp_path: Path) -> None:
    truth = np.random.default_rng(1).uniform(0, 1, size=(1, 1, 8, 8))
    save_grid(tmp_path / "one.png", truth, {"dlg": truth}, ["c0 s0 y=3"], "one")
    _assert_nontrivial_png(tmp_path / "one.png")
    with pytest.raises(ValueError, match="captions"):
        save_grid(tmp_path / "bad.png", truth, {}, [], "bad")
    with pytest.raises(ValueError, match="dlg"):
        save_grid(tmp_path / "bad.png", truth, {"dlg": truth[:, :, :4]}, ["x"], "bad")


def _hand_rows() -> list[dict[str, object]]:
    return [
        # ann/dlg: 2 rows, 1 judged correct -> ASR 50
        _row(round=1, judge_correct=True, label_correct=True, mse=0.01, psnr=20.0, ssim=0.95),
        _row(
            round=2, judge_correct=False, label_correct=True, mse=0.03, psnr=float("inf"), ssim=0.55
        ),
        # snn/idlg: 4 rows, 3 judged correct -> ASR 75
        *[
            _row(
                arm="snn",
                attack="idlg",
                round=r,
                sample=s,
                judge_correct=(r, s) != (2, 1),
                label_correct=s == 0,
                mse=0.1 * (s + 1),
                psnr=10.0 + s,
                ssim=0.2 + 0.4 * s,
                l2=2.0 * (s + 1),
            )
            for r in (1, 2)
            for s in (0, 1)
        ],
    ]


def _table_line(text: str, arm: str, attack: str) -> list[str]:
    for line in text.splitlines():
        cells = line.split()
        if cells[:2] == [arm, attack]:
            return cells
    raise AssertionError(f"no line for {arm}/{attack} in\n{text}")


def test_summary_numbers() -> None:
    text = summary_table(_hand_rows())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["arm", "attack", "n"]
    assert len(lines) == 4  # header, rule, two groups
    # arm attack n ASR label MSE PSNR SSIM SSIM>0.9 l2
    ann = _table_line(text, "ann", "dlg")
    assert ann[2:] == ["2", "50.0", "100.0", "0.02", "inf", "0.7500", "50.0", "1.50"]
    snn = _table_line(text, "snn", "idlg")
    assert snn[2:] == ["4", "75.0", "50.0", "0.15", "10.50", "0.4000", "0.0", "3.00"]
    widths = {len(line) for line in lines[2:]}
    assert len(widths) == 1  # fixed width (right-aligned last column)


def test_summary_empty() -> None:
    assert "(no rows)" in summary_table([])


def test_plot_rounds_and_write_report(tmp_path: Path) -> None:
    rows = _hand_rows()
    plot_rounds(rows, tmp_path / "p.png")
    img = _assert_nontrivial_png(tmp_path / "p.png")
    assert img.shape[1] > img.shape[0]  # two panels side by side
    out = tmp_path / "report"
    text = write_report(out, rows)
    assert (out / "summary.txt").read_text().strip() == text.strip()
    _assert_nontrivial_png(out / "leakage_per_round.png")
    assert "50.0" in text


def test_per_round_statistics_and_the_three_panel_plot(tmp_path: Path) -> None:
    """by_round: n, ASR with its Wilson interval, SSIM mean with its t interval per (arm,
    attack, round); with accuracy the plot gets a third panel (wider image)."""
    stats = by_round(_hand_rows())
    assert sorted(stats) == [("ann", "dlg"), ("snn", "idlg")]
    r2 = stats["snn", "idlg"][2]  # samples 0 (correct, SSIM 0.2) and 1 (wrong, SSIM 0.6)
    assert (r2["n"], r2["asr"], r2["label_acc"]) == (2, 50.0, 50.0)
    assert (r2["asr_lo"], r2["asr_hi"]) == pytest.approx(
        tuple(100 * v for v in wilson_interval(1, 2))
    )
    assert (r2["ssim"], r2["ssim_lo"], r2["ssim_hi"]) == pytest.approx(
        t_interval([0.2, 0.6], bounds=(-1.0, 1.0))
    )
    plot_rounds(_hand_rows(), tmp_path / "two.png", chance=0.1)
    accuracy = {"ann": [(1, 0.5), (2, 0.8)], "snn": [(1, 0.4), (2, 0.9)]}
    plot_rounds(_hand_rows(), tmp_path / "three.png", chance=0.1, accuracy=accuracy)
    two = _assert_nontrivial_png(tmp_path / "two.png")
    three = _assert_nontrivial_png(tmp_path / "three.png")
    assert three.shape[1] == pytest.approx(1.5 * two.shape[1], rel=0.01)


def test_report_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "leakage.csv"
    append_rows(path, _hand_rows())
    assert summary_table(read_rows(path)) == summary_table(_hand_rows())
    write_report(tmp_path, read_rows(path))
    plot_rounds([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").exists()
