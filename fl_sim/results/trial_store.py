"""Durable results of offline trials (``fl-sim reproduce``, the experiments): one SQLite file
per output dir.

A trial is one sample of one cell (a dataset and config of a paper table) attacked on its own
fresh victim; its leakage rows are written in one transaction with the trial's own record, so
a reproduction killed at any moment keeps every finished trial and none of an unfinished one,
and ``--resume`` runs only the trials still missing. A run's store (``ResultsStore``) does not
fit: its rows hang off federated rounds and checkpoints that offline trials do not have.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from fl_sim.results.schema import LEAKAGE, LEAKAGE_COLUMNS, check_columns
from fl_sim.results.sqlite_file import SqliteFile
from fl_sim.results.store import now

TRIALS_DB = "reproduce.sqlite"
TRIAL_SCHEMA_VERSION = 1

_LEAKAGE_DDL = ",\n    ".join(c.ddl for c in LEAKAGE)
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE trials (
    cell TEXT NOT NULL,
    trial INTEGER NOT NULL,       -- index of the sample in the dataset split
    seconds REAL NOT NULL,
    finished TEXT NOT NULL,
    PRIMARY KEY (cell, trial)
)""",
    f"""CREATE TABLE rows (
    id INTEGER PRIMARY KEY,
    cell TEXT NOT NULL,
    trial INTEGER NOT NULL,
    {_LEAKAGE_DDL},
    FOREIGN KEY (cell, trial) REFERENCES trials (cell, trial)
)""",
)


class TrialStore(SqliteFile):
    """``<out>/reproduce.sqlite``: the reproduction's identity (meta), finished trials, rows."""

    def __init__(self, out_dir: str | Path, name: str = TRIALS_DB) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.out_dir / name, _SCHEMA, TRIAL_SCHEMA_VERSION)

    def meta(self) -> dict[str, object]:
        """The stored identity (empty for a new store)."""
        cur = self.conn.execute("SELECT key, value FROM meta")
        return {str(r["key"]): json.loads(r["value"]) for r in cur}

    def claim(self, identity: Mapping[str, object]) -> None:
        """Record ``identity`` in a new store, or check that a resumed one has the same:
        rows of different protocols must never be pooled into one table."""
        stored = self.meta()
        if not stored:
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, sort_keys=True)) for k, v in identity.items()],
                )
            return
        changed = sorted(k for k in {*stored, *identity} if stored.get(k) != identity.get(k))
        if changed:
            diff = ", ".join(
                f"{k}: stored {stored.get(k)!r}, now {identity.get(k)!r}" for k in changed
            )
            raise ValueError(f"{self.path} was written with other settings ({diff})")

    def finished(self, cell: str) -> set[int]:
        """Trials of ``cell`` already stored."""
        cur = self.conn.execute("SELECT trial FROM trials WHERE cell = ?", (cell,))
        return {int(r["trial"]) for r in cur}

    def add_trial(
        self, cell: str, trial: int, rows: Sequence[Mapping[str, object]], seconds: float
    ) -> None:
        """One finished trial and its rows, in one transaction."""
        for i, row in enumerate(rows):
            check_columns(row, i)
        names = ", ".join(LEAKAGE_COLUMNS)
        marks = ", ".join("?" * (len(LEAKAGE_COLUMNS) + 2))
        with self.transaction() as db:
            db.execute(
                "INSERT INTO trials (cell, trial, seconds, finished) VALUES (?, ?, ?, ?)",
                (cell, trial, seconds, now()),
            )
            db.executemany(
                f"INSERT INTO rows (cell, trial, {names}) VALUES ({marks})",
                [(cell, trial, *(c.to_sql(row[c.name]) for c in LEAKAGE)) for row in rows],
            )

    def rows(self, cell: str, trials: Sequence[int] | None = None) -> list[dict[str, object]]:
        """Leakage rows of ``cell`` (of ``trials`` only, when given), by trial then insertion."""
        cur = self.conn.execute(
            f"SELECT trial, {', '.join(LEAKAGE_COLUMNS)} FROM rows "
            "WHERE cell = ? ORDER BY trial, id",
            (cell,),
        )
        keep = None if trials is None else set(trials)
        return [
            {c.name: c.from_sql(rec[c.name]) for c in LEAKAGE}
            for rec in cur
            if keep is None or rec["trial"] in keep
        ]

    def seconds(self, cell: str) -> float:
        """Summed worker time of the stored trials of ``cell``."""
        cur = self.conn.execute(
            "SELECT coalesce(sum(seconds), 0) FROM trials WHERE cell = ?", (cell,)
        )
        return float(cur.fetchone()[0])
