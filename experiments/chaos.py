"""Chaos check (issue 27): SIGKILL ``fl-sim run`` at random moments, resume, compare.

First one uninterrupted run (the reference, timed). Then each try starts the same run in a
session of its own, SIGKILLs its whole process group at a moment drawn uniformly over the
reference's wall time (start-up, mid-round, between rounds), waits for everything the run
started to end (every process carries a marker in its environment), and continues with
``fl-sim run --resume`` (a fresh start where the kill came before a round was stored).
Each try's leakage rows are compared with the reference's on (arm, round, client, attack,
sample): ``lost`` (missing), ``duplicated`` (a key twice) and ``differing`` (every column
but ``seconds`` differs), and each arm's final checkpoint must equal the reference's bit for
bit. ``survivors``: processes of the killed run still alive after the grace period.

    python -m experiments.chaos --tries 20

prints one line per try, then ``tries=<n> survivors=<k> lost=<k> duplicated=<k>
differing=<k>`` (and a line for final models). Exit 1 where any count is not 0.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.parsing import OneLineErrorParser
from fl_sim.ops import proctree
from fl_sim.results.report import read_rows
from fl_sim.results.store import DB_NAME

DEFAULT_SETTINGS = ("rounds=3", "clients=4", "attacks=idlg", "arms=ann", "iterations=20")
MARKER = "FL_SIM_CHAOS_TRY"
KEY = ("arm", "round", "client", "attack", "sample")
UNTIMED = "seconds"  # the one column that may differ between identical runs
SURVIVOR_WAIT_S = 20.0  # the watchdog's grace is 5 s; a process alive after this survived
RUN_TIMEOUT_S = 900


@dataclass
class Try:
    """What one try found."""

    kill_at: float
    stage: str  # what the run had stored when it was killed
    survivors: int = 0
    lost: int = 0
    duplicated: int = 0
    differing: int = 0
    models_differing: int = 0
    error: str = ""


def fl_sim(argv: list[str], marker: str, log: Path) -> subprocess.Popen[bytes]:
    """``fl-sim ARGV`` in a session of its own, its output to ``log``, every process it starts
    marked with ``marker`` in the environment."""
    env = {**os.environ, MARKER: marker}
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fl_sim.cli", *argv],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip


def marked(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARKER=marker``."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for proc in proctree.snapshot().values():
        if proc.pid == os.getpid() or not proc.alive:
            continue
        try:
            if needle in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                found.append(proc.pid)
        except OSError:  # gone, or not ours to read
            continue
    return found


def wait_gone(marker: str, timeout: float) -> list[int]:
    """Wait until no process carries ``marker`` (or ``timeout``); those left."""
    deadline = time.monotonic() + timeout
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def run_to_end(argv: list[str], marker: str, log: Path) -> int:
    proc = fl_sim(argv, marker, log)
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


def stored_stage(out: Path) -> str:
    """What a killed run had committed: "no store", or its last round per arm."""
    if not (out / DB_NAME).is_file():
        return "no store"
    import sqlite3

    try:
        with sqlite3.connect(f"file:{out / DB_NAME}?mode=ro", uri=True) as db:
            rounds = db.execute("SELECT arm, max(round) FROM rounds GROUP BY arm").fetchall()
    except sqlite3.Error as err:
        return f"store unreadable ({err})"
    return ", ".join(f"{arm} r{n}" for arm, n in rounds) or "store, no round"


def compare(reference: list[dict[str, object]], got: list[dict[str, object]], result: Try) -> None:
    """Count lost, duplicated and differing rows of ``got`` against ``reference``."""

    def key(row: dict[str, object]) -> tuple[object, ...]:
        return tuple(row[k] for k in KEY)

    def values(row: dict[str, object]) -> str:
        return repr(sorted((k, repr(v)) for k, v in row.items() if k != UNTIMED))

    counts = Counter(key(r) for r in got)
    result.duplicated = sum(n - 1 for n in counts.values() if n > 1)
    by_key = {key(r): values(r) for r in got}
    result.lost = sum(key(r) not in by_key for r in reference)
    result.differing = sum(key(r) in by_key and by_key[key(r)] != values(r) for r in reference)
    wanted = {key(r) for r in reference}
    result.differing += sum(k not in wanted for k in counts)  # rows the reference lacks


def final_models(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Each arm's last checkpoint (by name order), loaded with ``weights_only=True``."""
    latest: dict[str, Path] = {}
    for path in sorted((out / "checkpoints").glob("*-r*.pt")):
        latest[path.name.split("-r")[0]] = path
    return {arm: torch.load(p, weights_only=True) for arm, p in latest.items()}


def same_models(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def one_try(
    index: int, work: Path, settings: list[str], wall: float, rng: random.Random, ref: Path
) -> Try:
    out, log = work / f"try{index:02d}", work / f"try{index:02d}.log"
    marker = f"{os.getpid()}-{index}"
    argv = ["run", "--out", str(out), *(x for s in settings for x in ("--set", s))]
    kill_at = rng.uniform(0.0, wall)
    proc = fl_sim(argv, marker, log)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=kill_at)
    with_killed = proc.poll() is None
    if with_killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    result = Try(kill_at, stored_stage(out) + ("" if with_killed else " (finished first)"))
    result.survivors = len(wait_gone(marker, SURVIVOR_WAIT_S))
    if result.survivors:
        for pid in marked(marker):  # do not let them spoil the next try
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    resume = ["run", "--resume", str(out)] if (out / DB_NAME).is_file() else argv
    code = run_to_end(resume, marker, log)
    if code != 0:
        result.error = f"fl-sim {' '.join(resume[:2])} exited {code}; see {log}"
        return result
    compare(read_rows(ref / "leakage.csv"), read_rows(out / "leakage.csv"), result)
    want, got = final_models(ref), final_models(out)
    result.models_differing = sum(
        arm not in got or not same_models(want[arm], got[arm]) for arm in want
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m experiments.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the kill times")
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="K=V",
        help=f"run settings on top of {' '.join(DEFAULT_SETTINGS)}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.tries < 1:
        parser.error(f"--tries must be >= 1, got {args.tries}")
    settings = [*DEFAULT_SETTINGS, *args.overrides]
    work = args.work or Path(tempfile.mkdtemp(prefix="fl-sim-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    ref = work / "reference"
    began = time.monotonic()
    code = run_to_end(
        ["run", "--out", str(ref), *(x for s in settings for x in ("--set", s))],
        f"{os.getpid()}-ref",
        work / "reference.log",
    )
    wall = time.monotonic() - began
    if code != 0:
        print(f"chaos: the reference run failed (exit {code}); see {work / 'reference.log'}")
        return 1
    print(f"chaos: reference run {' '.join(settings)}: {wall:.0f}s; work dir {work}", flush=True)
    rng = random.Random(args.seed)
    results = []
    for i in range(args.tries):
        r = one_try(i, work, settings, wall, rng, ref)
        results.append(r)
        print(
            f"chaos: try {i + 1}/{args.tries}: killed at {r.kill_at:.1f}s ({r.stage}); "
            f"survivors={r.survivors} lost={r.lost} duplicated={r.duplicated} "
            f"differing={r.differing} models_differing={r.models_differing}"
            + (f"; {r.error}" if r.error else ""),
            flush=True,
        )
        if not r.error and args.work is None:
            shutil.rmtree(work / f"try{i:02d}", ignore_errors=True)
    total = {f: sum(getattr(r, f) for r in results) for f in ("survivors", "lost", "duplicated")}
    differing = sum(r.differing for r in results)
    failed = sum(bool(r.error) for r in results)
    models = sum(r.models_differing for r in results)
    print(
        f"tries={len(results)} survivors={total['survivors']} lost={total['lost']} "
        f"duplicated={total['duplicated']} differing={differing}"
    )
    print(f"final models differing={models}; resumes failed={failed}")
    bad = any((*total.values(), differing, failed, models))
    if args.work is None and not bad:
        shutil.rmtree(work, ignore_errors=True)  # a temp dir: nothing worth keeping
    elif bad:
        print(f"chaos: the runs are kept in {work}")
    return int(bad)


if __name__ == "__main__":
    raise SystemExit(main())
