"""Durable results of a run: an embedded SQLite database, committed round by round.

Everything a round produces (reconstruction rows, captures, faults) waits in memory until the
round has finished (aggregation and global evaluation); then it is written in one
transaction together with the round's row, after the new global model's checkpoint has been
written (temp file + rename). A run killed at any moment keeps every finished round and
nothing of an unfinished one, so ``fl-sim run --resume`` can continue it without duplicates.
``leakage.csv`` and ``faults.csv`` are exports of the database.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from fl_sim.atomic_file import atomic_write
from fl_sim.results.report import write_rows
from fl_sim.results.schema import (
    FAULT,
    FAULT_COLUMNS,
    LEAKAGE,
    LEAKAGE_COLUMNS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    check_columns,
)
from fl_sim.results.sqlite_file import SqliteFile
from models.safe_load import load_weights

__all__ = [
    "CHECKPOINTS",
    "DB_NAME",
    "SCHEMA_VERSION",
    "PendingRound",
    "ResultsStore",
    "save_atomic",
]

DB_NAME = "results.sqlite"
CHECKPOINTS = "checkpoints"

Row = Mapping[str, object]


def now() -> str:
    """UTC timestamp for the database."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class PendingRound:
    """What one (arm, round) has produced so far; written only when the round commits."""

    rows: list[tuple[dict[str, object], str | None]] = field(default_factory=list)
    captures: dict[int, tuple[bool, str | None]] = field(default_factory=dict)
    faults: dict[str, tuple[int | None, str]] = field(default_factory=dict)


class ResultsStore(SqliteFile):
    """``<out>/results.sqlite``: runs, finished rounds, captures, reconstructions, faults."""

    def __init__(self, out_dir: str | Path, readonly: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if not readonly:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.out_dir / DB_NAME, SCHEMA_SQL, SCHEMA_VERSION, readonly)
        self.run_id: int | None = None
        self.pending: dict[tuple[str, int], PendingRound] = {}

    @classmethod
    def open_existing(cls, out_dir: str | Path, writable: bool = False) -> ResultsStore:
        """The store of an earlier run, read-only unless ``writable``; a clear error if
        ``out_dir`` has none, or one that is damaged or not a results store."""
        path = Path(out_dir) / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{Path(out_dir)} holds no {DB_NAME}: nothing to resume")
        return cls(out_dir, readonly=not writable)

    # ------------------------------------------------------------------ runs

    def start_run(self, record: Mapping[str, object], resumed: bool = False) -> int:
        """Record this invocation (the run.json record: config, judge, versions)."""
        judge: Mapping[str, object] = record.get("judge") or {}  # type: ignore[assignment]
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (started, resumed, config, judge_arch, judge_dataset, "
                "judge_accuracy, judge_path, judge, versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now(), int(resumed), json.dumps(record["config"]), judge.get("arch"),
                    judge.get("dataset"), judge.get("test_accuracy"), judge.get("path"),
                    json.dumps(judge), json.dumps(record.get("versions") or {}),
                ),
            )  # fmt: skip
        self.run_id = int(cur.lastrowid or 0)
        return self.run_id

    def finish_run(self) -> None:
        """Stamp the current invocation as finished."""
        if self.run_id is not None:
            with self.transaction() as db:
                db.execute("UPDATE runs SET finished = ? WHERE id = ?", (now(), self.run_id))

    def runs(self) -> list[dict[str, object]]:
        """Every invocation, oldest first, with config and versions decoded."""
        out = []
        for rec in self.conn.execute("SELECT * FROM runs ORDER BY id"):
            row = dict(rec)
            row["config"] = json.loads(row["config"])
            row["versions"] = json.loads(row["versions"])
            out.append(row)
        return out

    def run_config(self) -> dict[str, object]:
        """The config of the latest invocation (what ``--resume`` continues)."""
        rec = self.conn.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if rec is None:
            raise ValueError(f"{self.path} records no run")
        return dict(json.loads(rec["config"]))

    # ------------------------------------------------------------------ pending round

    def _pending(self, arm: str, server_round: int) -> PendingRound:
        if server_round in self.finished_rounds(arm):
            raise ValueError(f"round {server_round} of arm {arm} is already committed")
        return self.pending.setdefault((arm, server_round), PendingRound())

    def _relative(self, path: str | Path | None) -> str | None:
        """A path inside the out dir as a relative one (the dir stays movable)."""
        if path is None:
            return None
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.out_dir.resolve()))
        except ValueError:
            return str(path)

    def add_reconstructions(self, rows: Sequence[Row], grid: str | Path | None = None) -> None:
        """Leakage rows (``schema.LeakageRow`` dicts) of a round, with its grid image if any;
        all rows are checked (columns, duplicates, rounds not yet committed) before any is kept."""
        seen = {_key(r) for p in self.pending.values() for r, _ in p.rows}
        for i, row in enumerate(rows):
            check_columns(row, i)
            if _key(row) in seen:
                raise ValueError(f"duplicate reconstruction row {_key(row)}")
            seen.add(_key(row))
        for arm, server_round in {_arm_round(row) for row in rows}:
            self._pending(arm, server_round)  # refuses a committed round
        grid_rel = self._relative(grid)
        for row in rows:
            self._pending(*_arm_round(row)).rows.append((dict(row), grid_rel))

    def add_capture(
        self,
        arm: str,
        server_round: int,
        client: int,
        attacked: bool,
        path: str | Path | None = None,
    ) -> None:
        """A capture of a round: whether it was attacked, and its file if it was saved."""
        pending = self._pending(arm, server_round)
        if client in pending.captures:
            raise ValueError(f"duplicate capture of client {client} in {arm} round {server_round}")
        pending.captures[client] = (bool(attacked), self._relative(path))

    def add_fault(
        self, arm: str, server_round: int, node: int | str, client: int | None, reason: str
    ) -> None:
        """A reply left out of aggregation."""
        pending = self._pending(arm, server_round)
        pending.faults.setdefault(str(node), (client, reason))

    def commit_round(
        self,
        arm: str,
        server_round: int,
        state: Mapping[str, torch.Tensor],
        *,
        accuracy: float | None,
        seconds: float,
        replies: int,
    ) -> Path:
        """Checkpoint the new global model, then write the round and all it produced in one
        transaction; returns the checkpoint's path."""
        pending = self.pending.get((arm, server_round), PendingRound())
        rel = f"{CHECKPOINTS}/{arm}-r{server_round:03d}.pt"
        path = self.out_dir / rel
        save_atomic({k: v.detach().cpu() for k, v in state.items()}, path)
        attacked = sum(a for a, _ in pending.captures.values())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds (arm, round, run_id, accuracy, seconds, replies, captures, "
                "attacked, checkpoint, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    arm, server_round, self.run_id or 0, accuracy, seconds, replies,
                    len(pending.captures), attacked, rel, now(),
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO captures (arm, round, client, attacked, path) VALUES (?, ?, ?, ?, ?)",
                [(arm, server_round, c, int(a), p) for c, (a, p) in pending.captures.items()],
            )
            columns = ", ".join(LEAKAGE_COLUMNS)
            marks = ", ".join("?" * (len(LEAKAGE_COLUMNS) + 1))
            db.executemany(
                f"INSERT INTO reconstructions ({columns}, grid) VALUES ({marks})",
                [tuple(c.to_sql(row[c.name]) for c in LEAKAGE) + (g,) for row, g in pending.rows],
            )
            db.executemany(
                f"INSERT INTO faults ({', '.join(FAULT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(FAULT_COLUMNS))})",
                [(arm, server_round, n, c, r) for n, (c, r) in pending.faults.items()],
            )
        self.pending.pop((arm, server_round), None)
        return path

    # ------------------------------------------------------------------ reading

    def finished_rounds(self, arm: str) -> list[int]:
        """Committed rounds of ``arm``, ascending."""
        cur = self.conn.execute("SELECT round FROM rounds WHERE arm = ? ORDER BY round", (arm,))
        return [int(r[0]) for r in cur]

    def last_round(self, arm: str) -> int:
        """The last committed round of ``arm`` (0: none)."""
        rec = self.conn.execute("SELECT max(round) FROM rounds WHERE arm = ?", (arm,)).fetchone()
        return int(rec[0] or 0)

    def latest_checkpoint(self, arm: str) -> tuple[int, Path] | None:
        """(round, path) of the global model after ``arm``'s last committed round."""
        rec = self.conn.execute(
            "SELECT round, checkpoint FROM rounds WHERE arm = ? ORDER BY round DESC LIMIT 1",
            (arm,),
        ).fetchone()
        return None if rec is None else (int(rec[0]), self.out_dir / rec[1])

    def load_checkpoint(self, arm: str) -> dict[str, torch.Tensor]:
        """State dict of ``arm``'s latest checkpoint (``weights_only``)."""
        latest = self.latest_checkpoint(arm)
        if latest is None:
            raise FileNotFoundError(f"arm {arm} has no finished round in {self.path}")
        return load_weights(latest[1])

    def rounds(self) -> list[dict[str, object]]:
        """Every committed round, by arm and round."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM rounds ORDER BY arm, round")]

    def captures(self) -> list[dict[str, object]]:
        """Every committed capture, by arm, round, client."""
        cur = self.conn.execute("SELECT * FROM captures ORDER BY arm, round, client")
        return [dict(r) for r in cur]

    def reconstruction_rows(self, arm: str | None = None) -> list[dict[str, object]]:
        """Leakage rows by arm and round (within a round in the order they were produced;
        a resumed run lists them as an uninterrupted one), typed like ``report.read_rows``."""
        columns = ", ".join(LEAKAGE_COLUMNS)
        query = f"SELECT {columns} FROM reconstructions"
        args: tuple[object, ...] = ()
        if arm is not None:
            query, args = query + " WHERE arm = ?", (arm,)
        cur = self.conn.execute(query + " ORDER BY arm, round, id", args)
        return [{c.name: c.from_sql(rec[c.name]) for c in LEAKAGE} for rec in cur]

    def grids(self) -> list[dict[str, object]]:
        """(arm, round, grid) of every committed round with an image grid (path relative to
        the out dir), by arm and round."""
        cur = self.conn.execute(
            "SELECT DISTINCT arm, round, grid FROM reconstructions WHERE grid IS NOT NULL "
            "ORDER BY arm, round"
        )
        return [dict(r) for r in cur]

    def fault_rows(self) -> list[dict[str, object]]:
        """Every committed fault by arm and round (client None when unknown)."""
        columns = ", ".join(FAULT_COLUMNS)
        cur = self.conn.execute(f"SELECT {columns} FROM faults ORDER BY arm, round, id")
        return [dict(r) for r in cur]

    # ------------------------------------------------------------------ exports

    def export_leakage_csv(self, path: str | Path) -> int:
        """Write every reconstruction row to ``path`` (temp file + rename); returns the count."""
        rows = self.reconstruction_rows()
        write_rows(Path(path), rows)
        return len(rows)

    def export_faults_csv(self, path: str | Path) -> int:
        """Write every fault to ``path`` (temp file + rename); returns the count."""
        rows = self.fault_rows()
        with atomic_write(path, "w") as fh:
            writer = csv.writer(fh)
            writer.writerow(FAULT_COLUMNS)
            for row in rows:
                writer.writerow([c.to_csv(row[c.name]) for c in FAULT])
        return len(rows)


def _key(row: Row) -> tuple[object, ...]:
    """The identity of a reconstruction row."""
    return (
        str(row["arm"]),
        int(row["round"]),
        int(row["client"]),
        str(row["attack"]),
        int(row["sample"]),
    )  # type: ignore[call-overload]


def _arm_round(row: Row) -> tuple[str, int]:
    return str(row["arm"]), int(row["round"])  # type: ignore[call-overload]


def save_atomic(obj: object, path: Path) -> None:
    """torch.save via a temp file, fsync and rename: readers never see a half-written file."""
    with atomic_write(path) as fh:
        torch.save(obj, fh)
