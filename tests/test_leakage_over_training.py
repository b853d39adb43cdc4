"""experiments.leakage_over_training on a tiny in-process federation: files, the table's
rows and accuracies taken from the store, the last lines, and a clear error without a store."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
from inproc_grid import InProcessGrid

from experiments import leakage_over_training as lot
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import run_federation
from fl_sim.results.store import ResultsStore


def test_report_of_a_scheduled_run(small_cfg: RunConfig, capsys: pytest.CaptureFixture) -> None:
    cfg = small_cfg.replace(rounds=3, attacks=("idlg",), iterations=2, attack_rounds="1,3")
    run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)
    out = Path(cfg.results.out)
    lot.main(["--from-run", str(out)])
    for name in ("over_training.csv", "over_training.md", "over_training.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "over_training.csv") as fh:
        records = list(csv.DictReader(fh))
    assert [(r["arm"], r["attack"], r["round"]) for r in records] == [
        (arm, "idlg", rnd) for arm in ("ann", "snn") for rnd in ("1", "3")
    ]
    with ResultsStore.open_existing(out) as store:
        after = {(r["arm"], r["round"]): r["accuracy"] for r in store.rounds()}
    initial = lot.initial_accuracy(cfg)
    for r in records:
        arm, rnd = r["arm"], int(r["round"])
        assert int(r["n"]) == cfg.federation.clients
        assert float(r["acc_after"]) == pytest.approx(after[arm, rnd], abs=1e-12)
        before = initial[arm] if rnd == 1 else after[arm, rnd - 1]
        assert float(r["acc_before"]) == pytest.approx(before, abs=1e-12)
        assert 0 <= float(r["asr_lo"]) <= float(r["asr_pct"]) <= float(r["asr_hi"]) <= 100
        assert not math.isnan(float(r["ssim_mean"]))
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    for arm, line in zip(("ann", "snn"), lines, strict=True):
        assert re.fullmatch(
            rf"{arm} final_acc=0\.\d{{3}} idlg=\d+\.\d%->\d+\.\d% \(r1->r3\)", line
        ), line


def test_from_run_without_a_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lot.main(["--from-run", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds no results.sqlite" in capsys.readouterr().err
