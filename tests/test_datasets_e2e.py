"""A whole federation (in-process transport) on the embedded non-MNIST datasets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from inproc_grid import InProcessGrid

from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import run_federation
from fl_sim.results.report import read_rows
from fl_sim.results.store import ResultsStore


def federate(cfg: RunConfig) -> dict[str, dict]:
    return run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)


@pytest.mark.slow
def test_event_federation_attacks_the_snn_on_frames(tiny_digits, tmp_path: Path) -> None:
    cfg = RunConfig.from_mapping(
        {
            "dataset": "nmnist-emulated",
            "frames": 4,
            "clients": 2,
            "rounds": 2,
            "iterations": 3,
            "judge_epochs": 1,
            "out": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"),
        }  # fmt: skip
    )
    finals = federate(cfg)
    assert list(finals) == ["snn"]  # event data: no ANN arm
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert {r["arm"] for r in rows} == {"snn"}
    assert len(rows) == 2 * 2 * 3  # rounds x clients x attacks (dlg, idlg, rates), one sample each
    for r in rows:
        # l2 of the raw (unclamped) dummy: finite, and a few L-BFGS steps leave it far off.
        assert math.isfinite(r["l2"]) and r["l2"] > 1.0
        assert r["mse"] >= 0 and -1 <= r["ssim"] <= 1
    record = json.loads((Path(cfg.results.out) / "run.json").read_text())
    assert record["judge"]["arch"] == "dvs-gesture-snn"
    assert record["judge"]["data_options"] == {"frames": 4, "downsample": 1}
    assert 0 <= record["judge"]["test_accuracy"] <= 1
    with ResultsStore.open_existing(cfg.results.out) as store:
        stored = json.loads(store.conn.execute("SELECT judge FROM runs").fetchone()[0])
    assert stored == record["judge"]
    assert (Path(cfg.results.out) / "grids" / "snn-round002.png").is_file()


@pytest.mark.slow
def test_lfw_subset_federation_with_the_resnet_arcface_judge(tmp_path: Path) -> None:
    cfg = RunConfig.from_mapping(
        {
            "dataset": "lfw-subset",
            "clients": 2,
            "rounds": 1,
            "attacks": "idlg",
            "iterations": 20,
            "judge_epochs": 1,
            "out": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"),
        }  # fmt: skip
    )
    federate(cfg)
    rows = read_rows(Path(cfg.results.out) / "leakage.csv")
    assert {r["arm"] for r in rows} == {"ann", "snn"} and len(rows) == 4
    assert all(r["label_true"] in (0, 1) for r in rows)
    ann = [r for r in rows if r["arm"] == "ann"]
    # iDLG on the untrained sigmoid LeNet recovers 25x25 crops: labels and pixels.
    assert all(r["label_correct"] for r in ann)
    assert all(r["ssim"] > 0.5 for r in ann)
    record = json.loads((Path(cfg.results.out) / "run.json").read_text())
    assert record["judge"]["arch"] == "resnet50-arcface"
    assert record["judge"]["pretrained"] == "none"
