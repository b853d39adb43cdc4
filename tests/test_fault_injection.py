"""Faults injected into real runs (issue 27): a signal at a random moment of a round, and a
disk that fills up while the federation runs. Each asserts the exit code, one line naming
the cause and no traceback, no process and no temporary file left; after a signal, a resume
ends with each row exactly once. (SIGKILL with resume: tests/test_orphans.py and
``python -m experiments.chaos``; damaged stores, checkpoints, outputs and out dirs, before
anything starts: tests/test_preflight.py; a Ray start that times out: tests/test_engine_start.py.)
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests_helpers import tmpfs

from fl_sim.ops import proctree
from fl_sim.results.store import ResultsStore

linux_only = pytest.mark.skipif(not proctree.available(), reason="reads /proc")
SETTINGS = ("rounds=2", "clients=2", "arms=ann", "attacks=idlg", "iterations=5", "grids=false")
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}


def run_cmd(out: Path, judge_cache: str) -> list[str]:
    items = [*SETTINGS, f"cache_dir={judge_cache}"]
    return [sys.executable, "-m", "fl_sim.cli", "run", "--out", str(out)] + [
        x for item in items for x in ("--set", item)
    ]


@contextlib.contextmanager
def running(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in a session of its own, its output to ``log``; killed if still running at
    the end (a failed test leaves nothing behind)."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    started = time.monotonic()
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() - started < timeout, f"no {text!r} in time"
        time.sleep(0.1)


def tree_of(pid: int) -> list[proctree.Proc]:
    table = proctree.snapshot()
    return [table[p] for p in proctree.descendants(pid, table)]


def left_alive(tree: list[proctree.Proc], timeout: float) -> list[int]:
    """Pids of ``tree`` still alive after ``timeout`` (then ended, to leave nothing)."""
    deadline = time.monotonic() + timeout
    while any(proctree.is_same(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p.pid for p in tree if proctree.is_same(p)]
    proctree.end_tree(lambda: [p for p in tree if proctree.is_same(p)], grace=0)
    return left


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".tmp" in p.name]


def fl_sim_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("fl-sim: ")]


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_mid_round_loses_no_row_and_the_resume_finishes(
    tmp_path: Path, judge_cache: str, name: str
) -> None:
    """SIGTERM to fl-sim (``kill PID``), or SIGINT to its process group (Ctrl-C), at a random
    moment after round 1 started: the signal's exit code, no traceback, nothing left; the
    resume ends with one row per (round, client), every round committed once."""
    out, log = tmp_path / "out", tmp_path / "first.log"
    with running(run_cmd(out, judge_cache), log) as proc:
        wait_for(log, "[ann r1]", proc)  # round 1's attacks have started
        delay = random.uniform(0.0, 5.0)
        print(f"\n{name} {delay:.2f}s after round 1 started")
        time.sleep(delay)
        tree = tree_of(proc.pid)
        if name == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    text = log.read_text(errors="replace")
    assert code in (EXIT_CODES[name], 0), text[-3000:]  # 0: it finished before the signal
    assert "Traceback" not in text, text[-3000:]
    assert left_alive(tree, timeout=20) == []
    assert temp_files(out) == []

    resume = [sys.executable, "-m", "fl_sim.cli", "run", "--resume", str(out)]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    with ResultsStore.open_existing(out) as store:
        keys = sorted(
            (r["arm"], r["round"], r["client"], r["attack"], r["sample"])
            for r in store.reconstruction_rows()
        )
        assert keys == [("ann", r, c, "idlg", 0) for r in (1, 2) for c in (0, 1)]
        assert [(r["arm"], r["round"]) for r in store.rounds()] == [("ann", 1), ("ann", 2)]
    assert temp_files(out) == []


@linux_only
@pytest.mark.slow
def test_a_disk_that_fills_mid_run_is_one_line_and_leaves_nothing(
    tmp_path: Path, judge_cache: str
) -> None:
    """The out dir on a 64 MB tmpfs, filled to the last few KB once the ServerApp runs: the
    run stops with one line naming the full disk and no traceback, leaves no temp file and
    no process, and advises no resume the disk would refuse."""
    with tmpfs(tmp_path / "small", "size=64m") as mnt:
        out, log = mnt / "out", tmp_path / "run.log"
        with running(run_cmd(out, judge_cache), log) as proc:
            wait_for(log, "[ann r0] global model", proc)  # the ServerApp and its store are up
            tree = tree_of(proc.pid)
            filler = mnt / "filler"
            with filler.open("wb") as fh:  # the disk fills while round 1 runs
                free = shutil.disk_usage(mnt).free
                fh.write(b"\0" * max(0, free - 16 * 1024))
            code = proc.wait(timeout=600)
        text = log.read_text(errors="replace")
        assert code in (1, 2), text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        last = fl_sim_lines(text)[-1]
        assert "No space left on device" in last or "disk is full" in last, text[-3000:]
        assert "continue with `fl-sim run --resume" not in last  # the disk is still full
        assert left_alive(tree, timeout=20) == []
        assert temp_files(out) == []
    print(f"\n{last}")
