"""``fl-sim reproduce``: the paper's published values, the trial store and resume, tables with
our intervals and flags that follow from them, bad input in one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from test_cli_errors import fl_sim, one_error_line

import experiments.paper.table4 as table4
from experiments.paper.protocol import Cell, sample_indices
from experiments.paper.published import published, published_values
from experiments.paper.reproduce import reproduce
from experiments.paper.summary import asr, mean_of
from experiments.paper.table5 import TAUS, threshold_cell
from fl_sim.cli import main as cli_main
from fl_sim.results.schema import LeakageRow
from fl_sim.results.trial_store import TrialStore

INTERVAL = re.compile(r"^(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]$")


def test_published_values_cover_tables_iv_to_vi_with_their_source() -> None:
    values = published_values()
    counts = {t: sum(v.table == t for v in values) for t in ("IV", "V", "VI")}
    assert counts == {"IV": 9 * 2 * 4, "V": 6 * 2 * 2 * 2, "VI": 2 * 4}
    assert all(v.source.startswith(f"Table {v.table}, row ") for v in values)
    keys = [(v.table, v.dataset, v.model, v.attack, v.setting, v.metric) for v in values]
    assert len(set(keys)) == len(keys)
    dlg = published("IV", "mnist5k", "asr", "ann", "dlg")
    assert dlg is not None and dlg.value == 79.40 and "DLG / MNIST / LeNet" in dlg.source
    assert published("IV", "cifar100", "psnr", "snn", "idlg").value == 11.85  # type: ignore[union-attr]
    assert published("V", "nmnist-emulated", "l2", "snn", "idlg", "in tau=0.9").value == 42.5647  # type: ignore[union-attr]
    assert published("VI", "dvsgesture", "max", setting="inter").value == 105.15  # type: ignore[union-attr]
    assert published("IV", "lfw-subset", "asr", "ann", "dlg") is None  # another task


def test_sample_draw_is_a_prefix_so_more_samples_keep_the_old_ones() -> None:
    few, more = sample_indices(100, 5, 3), sample_indices(100, 20, 3)
    assert more[:5] == few and len(set(more)) == 20
    with pytest.raises(ValueError, match="more than the 100 training samples"):
        sample_indices(100, 101, 0)


def check_flags(table: dict) -> None:
    """Every flag follows from the cells: the published value lies outside our interval."""
    columns = table["columns"]
    for cells, flagged in zip(table["rows"], table["flagged"], strict=True):
        outside = []
        for i, column in enumerate(columns):
            if column.endswith(" ours [95% CI]") and cells[i + 1] != "-":
                match = INTERVAL.match(cells[i])
                if match:
                    lo, hi = float(match[2]), float(match[3])
                    if not lo <= float(cells[i + 1]) <= hi:
                        outside.append(column)
        assert flagged == bool(cells[-1]) == bool(outside), (cells, outside)


@pytest.mark.slow
def test_table4_runs_stores_resumes_and_flags(
    tmp_path: Path, judge_cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table4, "ATTACKS", ("idlg",))  # the workers fork after this
    out = tmp_path / "t4"
    args = dict(datasets=["mnist5k"], workers=1)
    sets = ["iterations=1", f"cache_dir={judge_cache}"]
    lines: list[str] = []
    reproduce("table4", out, samples=2, overrides=sets, log=lines.append, **args)  # type: ignore[arg-type]
    table = json.loads((out / "table4.reproduction.json").read_text())
    assert [r[:4] for r in table["rows"]] == [
        ["idlg", "mnist5k", "LeNet", "2"],
        ["idlg", "mnist5k", "SNN-LeNet", "2"],
    ]
    assert table["rows"][0][5] == "88.3" and table["rows"][1][9] == "0.41"  # paper columns
    check_flags(table)
    assert any("iterations=1" in note for note in table["notes"])
    assert (out / "table4-mnist5k.png").stat().st_size > 5_000
    assert (out / "table4.md").read_text().count("| idlg | mnist5k |") == 2
    store = TrialStore(out)
    cell = Cell("mnist5k", ("attacks=idlg",)).key
    first = store.finished(cell)
    assert len(first) == 2 and len(store.rows(cell)) == 4  # 2 samples x 2 arms
    store.close()

    with pytest.raises(FileExistsError, match="--resume"):
        reproduce("table4", out, samples=2, overrides=sets, **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="other settings"):
        reproduce("table4", out, samples=2, overrides=["iterations=2"], resume=True, **args)  # type: ignore[arg-type]
    lines.clear()
    reproduce("table4", out, samples=3, overrides=sets, resume=True, log=lines.append, **args)  # type: ignore[arg-type]
    assert any("2 trials stored, 1 to run" in line for line in lines), lines
    with TrialStore(out) as store:
        assert first < store.finished(cell) and len(store.finished(cell)) == 3
        rows = store.rows(cell)
    table = json.loads((out / "table4.reproduction.json").read_text())
    ann = [r for r in rows if r["arm"] == "ann"]
    assert table["rows"][0][3] == "3" and table["rows"][0][4] == asr(ann).text(".1f")
    assert table["rows"][0][8] == mean_of(ann, "ssim").text(".2f")


def fake_row(arm: str, attack: str, correct: bool, l2: float) -> dict[str, object]:
    return LeakageRow(
        arm=arm, round=0, client=0, attack=attack, sample=0, label_true=1,
        judge_pred=1 if correct else 2, judge_correct=correct, mse=0.5, ssim=0.0, l2=l2,
        status="converged", seconds=1.0,
    ).as_dict()  # fmt: skip


def test_table5_and_fig5_from_stored_trials_share_cells(tmp_path: Path, tiny_digits: dict) -> None:
    """Trials stored beforehand are not run again; table5 and fig5 read the same cells; a
    stand-in dataset's l2 is never flagged, its ASR is."""
    out = tmp_path / "t5"
    sets = ["judge_epochs=1"]
    indices = sample_indices(12, 2, 0)
    with TrialStore(out) as store:
        from experiments.paper.protocol import PAPER_PROTOCOL

        store.claim({"protocol": list(PAPER_PROTOCOL), "overrides": sets})
        for algorithm in ("post", "in"):
            for tau in TAUS:
                key = threshold_cell("nmnist-emulated", algorithm, tau).key
                for index in indices:  # every recording recovered at an l2 of 1e4
                    rows = [fake_row("snn", a, True, 1e4) for a in ("dlg", "idlg")]
                    store.add_trial(key, index, rows, 0.5)
    lines: list[str] = []
    common = dict(datasets=["nmnist-emulated"], samples=2, workers=1, resume=True)
    reproduce("table5", out, overrides=sets, log=lines.append, **common)  # type: ignore[arg-type]
    assert any("0 to run" in line for line in lines), lines
    table = json.loads((out / "table5.reproduction.json").read_text())
    assert len(table["rows"]) == len(TAUS) * 2
    for cells, flagged in zip(table["rows"], table["flagged"], strict=True):
        assert cells[4].startswith("100.0 [") and cells[6].startswith("10000.0")
        assert flagged and cells[-1] == "post asr, in asr"  # l2 not flagged: a stand-in
    reproduce("fig5", out, overrides=sets, log=lines.append, **common)  # type: ignore[arg-type]
    fig = json.loads((out / "fig5.reproduction.json").read_text())
    assert len(fig["rows"]) == len(TAUS) * 2 and len(fig["columns"]) == 4 + 4 + 1
    assert fig["figures"][0] == "fig5.png" and (out / "fig5.png").stat().st_size > 10_000


def test_table6_is_the_reference_l2_averaged_over_classes(tmp_path: Path) -> None:
    from fl_sim.data.config import DataConfig
    from fl_sim.data.reference_l2 import reference_l2_for_config

    reproduce("table6", tmp_path, ["mnist5k"], log=lambda _: None)
    table = json.loads((tmp_path / "table6.reproduction.json").read_text())
    ref = reference_l2_for_config(DataConfig(dataset="mnist5k"), 0, "test")
    for cells, kind in zip(table["rows"], ("intra", "inter"), strict=True):
        avg = getattr(ref, f"{kind}_avg")
        assert cells[:3] == ["mnist5k", kind, str(avg.classes)]
        for i, stat in enumerate(("mean", "std", "min", "max")):
            ours = INTERVAL.match(cells[4 + 2 * i])
            assert ours and math.isclose(float(ours[1]), getattr(avg, stat), abs_tol=0.005)
            assert float(ours[2]) <= float(ours[1]) <= float(ours[3])
            assert cells[5 + 2 * i] == "-"  # the paper has no MNIST Table VI
    assert table["flagged"] == [False, False]


def test_bad_reproductions_answer_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = fl_sim("reproduce", "table4", "--datasets", "nmnist-emulated")  # a user's shell
    assert proc.returncode == 2 and "table4 takes image datasets" in one_error_line(proc)
    out = str(tmp_path / "out")
    for args, message in (
        (["table5", "--datasets", "mnist5k"], "table5 takes event datasets; mnist5k is image"),
        (["table4", "--set", "dataset=mnist"], "--set dataset: set by the reproduction"),
        (["table4", "--datasets", "cifar100"], "none of the datasets cifar100 is available"),
        (["table4", "--datasets", "bogus"], "dataset: unknown value 'bogus'"),
        (["table4", "--samples", "0"], "--samples must be >= 1, got 0"),
        (["table4", "--datasets", ","], "--datasets ',' names no dataset"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["reproduce", *args, "--out", out])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "reproduce.sqlite").exists()  # nothing started
    # table6 has no trials: --resume is harmless there
    assert cli_main(["reproduce", "table6", "--resume", "--datasets", "mnist5k", "--out", out]) == 0


# Known bug (issue 17 notes): since trials run on Ray, an interrupted reproduce did not exit
# within 30 s in two full CI runs (the CLI never printed "interrupted"); in isolation and in
# smaller sessions it exits in 1.5-6 s. Kept running, reported as XPASS when it passes.
CTRL_C = pytest.param(
    "ctrl-c",
    marks=pytest.mark.xfail(
        reason="hangs in full CI suites since Ray; cause unknown", strict=False
    ),
)


@pytest.mark.slow
@pytest.mark.parametrize("how", [CTRL_C, "sigkill"])  # SIGTERM: the Ctrl-C path
def test_stopping_a_reproduction_leaves_no_worker(
    tmp_path: Path, judge_cache: str, how: str, request: pytest.FixtureRequest
) -> None:
    """Ctrl-C (SIGINT to the process group), SIGTERM or SIGKILL of ``fl-sim reproduce`` while
    its workers attack: within seconds no worker is left (not after their trials)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fl_sim.ops import proctree

    cmd = [
        sys.executable, "-m", "fl_sim.cli", "reproduce", "table4", "--samples", "4",
        "--datasets", "mnist5k", "--out", str(tmp_path / "out"), "--set", "iterations=3000",
        "--set", f"cache_dir={judge_cache}",
    ]  # fmt: skip
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT on a hang dumps every thread
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        started = time.monotonic()
        while "to run with 2 workers" not in log.read_text():
            assert proc.poll() is None and time.monotonic() - started < 300, log.read_text()
            time.sleep(0.2)
        time.sleep(2)  # the workers are attacking
        workers = proctree.descendants(proc.pid, proctree.snapshot())
        assert len(workers) >= 2
        {
            "ctrl-c": lambda: os.killpg(proc.pid, signal.SIGINT),
            "sigterm": lambda: proc.send_signal(signal.SIGTERM),
            "sigkill": lambda: proc.send_signal(signal.SIGKILL),
        }[how]()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            message = f"fl-sim reproduce did not exit within 30 s; its log:\n{log.read_text()}"
            # an xfail hides its failure text: write the stacks where CI's output shows them
            plugins = request.config.pluginmanager
            terminal, capture = (
                plugins.getplugin("terminalreporter"),
                plugins.getplugin("capturemanager"),
            )
            if terminal is not None and capture is not None:
                with capture.global_and_fixture_disabled():
                    terminal.write_line(f"\n[{request.node.nodeid}] {message}")
            pytest.fail(message)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived fl-sim reproduce"
            time.sleep(0.1)
        assert proc.returncode == {"ctrl-c": 130, "sigterm": 143, "sigkill": -9}[how]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cli_names_are_the_registry() -> None:
    """The CLI lists the reproductions without importing torch; the list is the registry."""
    from experiments.paper import REPRODUCTIONS
    from fl_sim.commands.reproduce import NAMES

    assert list(NAMES) == list(REPRODUCTIONS)
