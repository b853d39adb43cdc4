"""`fl-sim run` for real: flwr run on a private SuperLink, Ray simulation engine, 2 clients."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from fl_sim.ops.launcher import LocalSuperLink
from fl_sim.results.report import read_rows
from fl_sim.results.schema import ATTACK_FAILED, SCORE_FAILED

if TYPE_CHECKING:
    from tests.conftest import CliRun


@pytest.mark.slow
def test_fl_sim_run_through_flower_simulation(flower_run: CliRun) -> None:
    """The session's `fl-sim run` (conftest.flower_run; tests/test_report_browser.py reads its
    report.html too)."""
    out, log = flower_run.out, flower_run.log
    assert flower_run.returncode == 0, log[-4000:]
    rows = read_rows(out / "leakage.csv")
    assert len(rows) == 2 * 2 * 2 * 3  # arms x rounds x clients x attacks (dlg, idlg, rates)
    # attacked as Ray tasks on the simulation's Ray (attack_runner=ray): none lost or failed
    assert not {r["status"] for r in rows} & {ATTACK_FAILED, SCORE_FAILED}
    assert "batched engine" not in log  # no fallback
    assert {(r["arm"], r["round"]) for r in rows} == {
        (a, r) for a in ("ann", "snn") for r in (1, 2)
    }
    for line in ("[ann r1 c0] idlg:", "[snn r2 c1] dlg:", "[snn r1 c0] rates:", "=== arm snn done"):
        assert line in log, f"missing progress line {line!r}"
    assert "ASR %" in log  # the summary table reached the console
    # Progress with ETA; Flower's records in flower.log, none on the console; no ANSI codes.
    assert "[snn] rounds 2/2, " in log and "[ann r2] attacks 6/6, " in log
    assert "\x1b" not in log and "INFO :" not in log and "Traceback" not in log
    flower_log = (out / "flower.log").read_text()
    assert "Starting Flower Simulation" in flower_log and "\x1b" not in flower_log
    assert (out / "leakage_per_round.png").stat().st_size > 10_000
    assert len(list((out / "grids").glob("*.png"))) == 4
    # report.html: rewritten after committed rounds, last after the run was stamped finished
    report = (out / "report.html").read_text()
    assert 'data-arms="ann,snn" data-rounds="2" data-status="finished"' in report
    assert "report.html not written" not in log


def test_local_superlink_starts_and_stops(tmp_path: Path) -> None:
    with LocalSuperLink(tmp_path / "flwr") as link:
        assert httpx.get(f"http://127.0.0.1:{link.port}/health", timeout=2).is_success
        assert 'address = "127.0.0.1:' in (tmp_path / "flwr" / "config.toml").read_text()
    assert link.proc is not None and link.proc.poll() is not None
    time.sleep(0.5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{link.port}/health", timeout=1)
