"""experiments.seed_spread: per-seed and pooled statistics, reuse of finished seeds, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments import seed_spread
from fl_sim.results.store import ResultsStore


def leak_row(client: int, hit: bool, ssim: float, arm: str = "ann") -> dict[str, object]:
    return {
        "arm": arm, "round": 1, "client": client, "attack": "idlg", "sample": 0,
        "label_true": 1, "label_pred": 1, "label_correct": True, "judge_pred": 1 if hit else 2,
        "judge_correct": hit, "mse": 0.1, "psnr": 10.0, "ssim": ssim, "l2": 1.0,
        "grad_loss": 1e-3, "status": "ok", "seconds": 0.1,
    }  # fmt: skip


def finished_seed(out: Path, rows: list[dict[str, object]]) -> None:
    """A seed's out dir as a finished fl-sim run leaves it (store + summary)."""
    with ResultsStore(out) as store:
        store.start_run({"config": {}})
        store.add_reconstructions(rows)
        store.commit_round("ann", 1, {"w": torch.zeros(1)}, accuracy=0.1, seconds=1.0, replies=2)
        store.finish_run()
    (out / "summary.txt").write_text("done\n")


def test_spread_pools_rows_and_keeps_each_seeds_value() -> None:
    per_seed = {
        0: [leak_row(0, True, 1.0), leak_row(1, True, 0.8)],  # ASR 100, SSIM 0.9
        1: [leak_row(0, False, 0.0), leak_row(1, True, 0.6)],  # ASR 50, SSIM 0.3
    }
    (row,) = seed_spread.spread(per_seed)
    assert (row["arm"], row["attack"], row["seeds"], row["n"]) == ("ann", "idlg", 2, 4)
    assert row["asr_pct"] == 75.0 and (row["asr_min"], row["asr_max"]) == (50.0, 100.0)
    assert row["asr_lo"] < 75.0 < row["asr_hi"]
    assert row["ssim_mean"] == pytest.approx(0.6)
    assert (row["ssim_min"], row["ssim_max"]) == pytest.approx((0.3, 0.9))
    assert row["asr_per_seed"] == "100.0 50.0"


def test_finished_seeds_are_reused_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished_seed(tmp_path / "seed-3", [leak_row(0, True, 0.9), leak_row(1, False, 0.1)])
    finished_seed(tmp_path / "seed-4", [leak_row(0, True, 0.7), leak_row(1, True, 0.5)])
    seed_spread.main(["--seeds", "3,4", "--out", str(tmp_path)])
    printed = capsys.readouterr().out.splitlines()
    assert "finished run in" in printed[0] and "finished run in" in printed[1]
    assert printed[-1].startswith("ann idlg asr=75.0% [") and "range=50.0-100.0" in printed[-1]
    assert "| ann | idlg | 4 | 75.0 [" in (tmp_path / "seed_spread.md").read_text()
    assert (tmp_path / "seed_spread.csv").read_text().startswith("arm,attack,seeds,n,")


@pytest.mark.parametrize("argv", [["--seeds", "1,x"], ["--seeds", "1,1"], ["--set", "seed=2"]])
def test_bad_options_exit_2(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        seed_spread.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
