"""Drive ``fl-sim run`` from an experiment: one run per directory, a finished run reused, an
interrupted one resumed, so a long experiment can be stopped and started again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fl_sim.ops import watchdog
from fl_sim.ops.launcher import stop_child
from fl_sim.results.store import DB_NAME, ResultsStore


def finished(out: Path) -> bool:
    """Whether ``out`` holds a run whose latest invocation finished."""
    if not (out / DB_NAME).is_file():
        return False
    with ResultsStore.open_existing(out) as store:
        runs = store.runs()
    return bool(runs) and runs[-1]["finished"] is not None


def run_or_reuse(out: Path, args: list[str], label: str) -> None:
    """``fl-sim run --out OUT ARGS`` (``args``: --config/--set options), unless ``out``
    holds it finished (reused) or interrupted (resumed); exits with fl-sim's code on failure."""
    if finished(out):
        print(f"{label}: finished run in {out} reused", flush=True)
        return
    if (out / DB_NAME).is_file():
        argv = ["run", "--resume", str(out)]
    else:
        argv = ["run", "--out", str(out), *args]
    print(f"{label}: fl-sim {' '.join(argv)}", flush=True)
    code = fl_sim(argv)
    if code:
        raise SystemExit(code)


def fl_sim(argv: list[str]) -> int:
    """``fl-sim ARGV`` in a child process, as a user runs it (the CLI sits above the
    experiments in the layers); the watchdog ends it, and all it started, if we die. A Ctrl-C
    reaches it too (same process group): we wait for it to stop, then stop ourselves."""
    with watchdog.watching(), subprocess.Popen([sys.executable, "-m", "fl_sim", *argv]) as proc:
        watchdog.watch(proc.pid)
        try:
            return proc.wait()
        except BaseException:
            stop_child(proc, timeout=30)
            raise
