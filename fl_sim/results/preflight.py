"""Checks made before a command starts anything (Flower, Ray, a judge's training) or writes
anything: the out directory can be written, the results store and the checkpoints a resume
will read are sound, the output files are not blocked, and the disk has room.

Each problem is a ``Refused`` (a ValueError: the CLI prints it in one line and exits 2)
naming the file, what is wrong and what the user can do. Nothing here writes: the store is
opened read-only, checkpoints are loaded with ``weights_only=True`` into memory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import torch

from fl_sim.results.sqlite_file import damaged, open_readonly
from fl_sim.results.store import CHECKPOINTS, DB_NAME, ResultsStore
from models.safe_load import load_weights

MB = 1 << 20
# Files a run writes that must be files (or absent), and those that must be directories.
OUTPUT_FILES = (
    "leakage.csv", "faults.csv", "summary.txt", "leakage_per_round.png", "run.json",
    "report.html", "flower.log",
)  # fmt: skip
OUTPUT_DIRS = ("grids", "captures", CHECKPOINTS)
MARGIN_BYTES = 50 * MB  # logs, the report's page, SQLite's journal
ROUND_EXTRA_BYTES = 1 * MB  # a round's image grid, rows and report refresh, generously


class Refused(ValueError):
    """A command refused before it started: one line, exit code 2, nothing written."""


def check_out_dir(out: Path) -> None:
    """``out`` is (or can be made) a directory this process can write: not a file, not
    below a file, on a writable file system, with write permission."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file, not a directory: choose another --out")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise Refused(f"--out {out}: {existing} is a file, not a directory: choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = read_only_reason(existing)
        raise Refused(f"--out {out}: {existing} {why}: choose another --out")


def read_only_reason(path: Path) -> str:
    """Why ``path`` cannot be written: a read-only file system, or no permission."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except OSError:
        pass
    return "is not writable (permission denied, or the directory is immutable)"


def check_outputs(out: Path) -> None:
    """No output file of a run is blocked by a directory (or an output dir by a file)."""
    for name in OUTPUT_FILES:
        if (out / name).is_dir():
            raise Refused(f"{out / name} is a directory where the run writes a file: move it away")
    for name in OUTPUT_DIRS:
        if (out / name).exists() and not (out / name).is_dir():
            raise Refused(f"{out / name} is a file where the run keeps a directory: move it away")


def check_store(out: Path) -> None:
    """``out``'s results store is a sound SQLite file of ours with a recorded run:
    ``PRAGMA quick_check`` on a read-only connection."""
    path = out / DB_NAME
    if not path.exists():
        raise FileNotFoundError(f"{out} holds no {DB_NAME}: nothing to resume")
    if not path.is_file():
        raise Refused(f"{path} is not a file: {out} holds no results store to continue")
    try:
        conn = open_readonly(path)
        try:
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise Refused(str(damaged(path, err))) from None
    if problems != ["ok"]:
        first = problems[0] if problems else "no answer"
        raise Refused(str(damaged(path, sqlite3.DatabaseError(first))))
    with ResultsStore.open_existing(out) as store:  # schema version, not empty, a run
        store.run_config()


def check_checkpoints(
    out: Path, expected: Mapping[str, Mapping[str, torch.Tensor]]
) -> dict[str, int]:
    """The latest checkpoint of each arm in ``expected`` (arm -> a state dict of the
    arm's model) exists and loads as a state dict of that model (names and shapes);
    returns each arm's last committed round (0: none, it starts from its initial model)."""
    with ResultsStore.open_existing(out) as store:
        latest = {arm: store.latest_checkpoint(arm) for arm in expected}
    for arm, found in latest.items():
        if found is not None:
            server_round, path = found
            what = f"arm {arm}'s checkpoint after round {server_round}"
            check_checkpoint(path, what, expected[arm])
    return {arm: 0 if found is None else found[0] for arm, found in latest.items()}


def state_mismatch(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> list[str]:
    """Names missing from or extra in ``state``, then those of another shape, sorted."""
    return sorted(set(state) ^ set(expected)) + sorted(
        k for k in set(state) & set(expected) if state[k].shape != expected[k].shape
    )


def check_checkpoint(path: Path, what: str, expected: Mapping[str, torch.Tensor]) -> None:
    """``path`` loads (``weights_only``) as a state dict with ``expected``'s names and shapes."""
    advice = "restore it, or start the run again in another out directory"
    if not path.is_file():
        raise Refused(f"{path} ({what}) is missing: {advice}")
    try:
        state = load_weights(path)
    except Exception as err:
        reason = " ".join(str(err).split()).split(". ")[0][:160]  # torch's first sentence
        raise Refused(
            f"{path} ({what}) does not load ({type(err).__name__}: {reason}): {advice}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Refused(f"{path} ({what}) is not a state dict of tensors: {advice}")
    wrong = state_mismatch(state, expected)
    if wrong:
        raise Refused(f"{path} ({what}) does not fit the model ({', '.join(wrong[:4])}): {advice}")


def state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes of a state dict's tensors."""
    return sum(t.numel() * t.element_size() for t in state.values())


def expected_write_bytes(
    rounds: Mapping[str, int],
    states: Mapping[str, Mapping[str, torch.Tensor]],
    clients: int,
    save_captures: bool,
) -> int:
    """A generous estimate of what ``rounds`` more rounds per arm write: per arm and round
    a checkpoint of the arm's model (``states``; with saved captures also each client's
    update and the global model it was computed at), an image grid and rows; plus a margin."""
    total = MARGIN_BYTES
    for arm, left in rounds.items():
        size = state_bytes(states[arm])
        per_round = size + ROUND_EXTRA_BYTES + (clients * 2 * size if save_captures else 0)
        total += left * per_round
    return total


def check_free_space(out: Path, needed: int) -> None:
    """The file system of ``out`` has ``needed`` bytes free."""
    existing = Path(out).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise Refused(
            f"--out {out}: {free / MB:.0f} MB free on its file system, the run needs about "
            f"{needed / MB:.0f} MB: free some space or choose another --out"
        )
