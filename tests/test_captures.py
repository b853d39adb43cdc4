"""Saved captures: owner-only files, faithful round trip, and `fl-sim attack` on them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch
from inproc_grid import InProcessGrid
from tests_helpers import ann_capture

from attacks.capture_io import load_capture, save_capture
from fl_sim.cli import main as cli_main
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import run_federation
from fl_sim.results.report import read_rows


def test_run_saves_captures_only_when_asked(small_cfg: RunConfig, tmp_path: Path) -> None:
    cfg = small_cfg.replace(rounds=1, arms=("ann",), attacks=("idlg",), iterations=2)
    run_federation(InProcessGrid(client_app, 2, cfg.to_flower()), cfg)
    assert not (Path(cfg.results.out) / "captures").exists()

    cfg = cfg.replace(out=str(tmp_path / "saved"), save_captures=True)
    run_federation(InProcessGrid(client_app, 2, cfg.to_flower()), cfg)
    files = sorted((Path(cfg.results.out) / "captures").iterdir())
    assert [f.name for f in files] == [
        "ann-r001-c000.pt", "ann-r001-c000.truth.pt", "ann-r001-c001.pt", "ann-r001-c001.truth.pt"
    ]  # fmt: skip
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_capture_round_trip(tmp_path: Path) -> None:
    capture = ann_capture()
    path = save_capture(capture, tmp_path / "c.pt")
    loaded = load_capture(path)
    assert loaded.public == capture.public and (loaded.round, loaded.client) == (3, 1)
    for k, v in capture.update.items():
        assert torch.equal(loaded.update[k], v)
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an fl-sim-capture file"):
        load_capture(tmp_path / "bad.pt")


def test_fl_sim_attack_on_saved_captures(small_cfg: RunConfig, tmp_path: Path) -> None:
    cfg = small_cfg.replace(rounds=1, arms=("ann",), attacks=("idlg",), save_captures=True)
    run_federation(InProcessGrid(client_app, 2, cfg.to_flower()), cfg)
    captures = sorted(str(p) for p in (Path(cfg.results.out) / "captures").glob("*c00?.pt"))
    out = tmp_path / "attack"
    code = cli_main(
        [
            "attack",
            *captures,
            "--out",
            str(out),
            "--set",
            "attacks=idlg",
            "--set",
            "iterations=100",  # iDLG recovers untrained-ANN digits well within it
            "--set",
            f"cache_dir={cfg.data.cache_dir}",
        ]
    )
    assert code == 0
    rows = read_rows(out / "attack.csv")
    assert [r["client"] for r in rows] == [0, 1]
    assert all(r["label_correct"] for r in rows)  # scored with the truth files beside them
    assert all(r["ssim"] > 0.9 for r in rows)
    assert len(list((out / "reconstructions").glob("*.pt"))) == 2
    assert len(list((out / "grids").glob("*.png"))) == 2
