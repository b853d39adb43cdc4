"""The one definition of what a run records per row: a leakage row (one reconstructed sample)
and a fault row (one reply left out of aggregation).

Each row is a frozen dataclass whose fields, in order, are the columns of its SQLite table
and of its CSV export; the scorer builds leakage rows with :class:`LeakageRow`, the store
derives its DDL and conversions from :data:`LEAKAGE` and :data:`FAULT`, and the CSV reader
and writer in ``fl_sim.results.report`` use the same columns. SQLite stores a NaN float as
NULL: a NULL metric reads back from the store as NaN.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = 2  # PRAGMA user_version of a database this code writes

# Leakage row statuses that are not the attack's own (Reconstruction.status): a capture whose
# attack raised, and one whose reconstruction could not be scored. Their metrics are empty.
ATTACK_FAILED = "attack-failed"
SCORE_FAILED = "score-failed"

_SQL_TYPES: dict[type, str] = {int: "INTEGER", bool: "INTEGER", float: "REAL", str: "TEXT"}


def _doc(text: str, default: object = dataclasses.MISSING) -> Any:
    """A dataclass field carrying its column's one-line description."""
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True, kw_only=True)
class LeakageRow:
    """One ground-truth sample of one (arm, round, client, attack): how much of it leaked."""

    arm: str = _doc("victim arm: ann or snn")
    round: int = _doc("FL round of the capture (0 or 1 in the offline experiments)")
    client: int = _doc("partition id the client reported (the sample/trial index offline)")
    attack: str = _doc("attack name, as in the attack registry (plus a suffix in experiments)")
    sample: int = _doc("index of the ground-truth sample in the client's batch")
    label_true: int | None = _doc("true label (empty without ground truth)", None)
    label_pred: int | None = _doc("label the attack recovered for this sample", None)
    label_correct: bool | None = _doc("label_pred == label_true (0/1)", None)
    judge_pred: int | None = _doc("judge's class for the reconstruction", None)
    judge_correct: bool | None = _doc("judge_pred == label_true (0/1): attack success", None)
    mse: float | None = _doc("MSE to the ground truth, reconstruction clipped to [0, 1]", None)
    psnr: float | None = _doc("PSNR in dB (inf for an exact reconstruction)", None)
    ssim: float | None = _doc("SSIM to the ground truth", None)
    l2: float | None = _doc("l2 distance to the ground truth (pixels or spikes), unclipped", None)
    grad_loss: float | None = _doc("final gradient-matching loss of the attack", None)
    status: str | None = _doc(
        f"Reconstruction.status, or {ATTACK_FAILED} / {SCORE_FAILED} (metrics empty)", None
    )
    seconds: float | None = _doc("attack wall time for the capture", None)

    def as_dict(self) -> dict[str, object]:
        """The row as ``{column: value}`` in column order (what the store and CSVs take)."""
        return {c.name: getattr(self, c.name) for c in LEAKAGE}


@dataclass(frozen=True, kw_only=True)
class FaultRow:
    """A reply the server left out of aggregation, and why."""

    arm: str = _doc("victim arm: ann or snn")
    round: int = _doc("FL round")
    node: str = _doc("Flower node id (unsigned 64-bit: kept as text)")
    client: int | None = _doc("partition id, empty when the reply did not say", None)
    reason: str = _doc("why the reply was left out")


@dataclass(frozen=True)
class Column:
    """One column: its name, the Python type a writer gives, SQL type, nullability, doc."""

    name: str
    type: type  # int, bool, float or str; bools are stored, exported and read back as 0/1
    nullable: bool
    doc: str

    @property
    def sql(self) -> str:
        return _SQL_TYPES[self.type]

    @property
    def ddl(self) -> str:
        """The column's definition in CREATE TABLE."""
        return f"{self.name} {self.sql}" + ("" if self.nullable else " NOT NULL")

    def to_sql(self, value: object) -> object:
        """Plain Python value for sqlite3 (bools as 0/1, numpy scalars unwrapped)."""
        if isinstance(value, bool | np.bool_ | np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        return value

    def from_sql(self, value: object) -> object:
        """A stored value typed as the CSV reader types it, except NULL floats: NaN."""
        if self.type is float:
            return math.nan if value is None else float(value)  # type: ignore[arg-type]
        if self.type in (int, bool):
            return None if value is None else int(value)  # type: ignore[call-overload]
        return value

    def to_csv(self, value: object) -> str:
        """CSV text: bools as 0/1, floats at repr precision (inf/nan too), None as empty."""
        if value is None:
            return ""
        if isinstance(value, bool | np.bool_):
            return "1" if value else "0"
        if isinstance(value, int | np.integer):
            return str(int(value))
        if isinstance(value, float | np.floating):
            return repr(float(value))
        return str(value)

    def from_csv(self, text: str) -> object:
        """Typed value of a CSV cell; an empty numeric cell is None."""
        if self.type in (int, bool):
            return int(text) if text != "" else None
        if self.type is float:
            return float(text) if text != "" else None
        return text


def columns_of(row_type: type) -> tuple[Column, ...]:
    """The columns of a row dataclass, in field order, from its annotations and docs."""
    hints = typing.get_type_hints(row_type)
    out = []
    for f in dataclasses.fields(row_type):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] not in _SQL_TYPES:
            raise TypeError(f"{row_type.__name__}.{f.name}: unsupported column type {hint}")
        out.append(Column(f.name, kinds[0], type(None) in args, f.metadata["doc"]))
    return tuple(out)


LEAKAGE: tuple[Column, ...] = columns_of(LeakageRow)
LEAKAGE_COLUMNS: tuple[str, ...] = tuple(c.name for c in LEAKAGE)
LEAKAGE_BY_NAME: dict[str, Column] = {c.name: c for c in LEAKAGE}
FAULT: tuple[Column, ...] = columns_of(FaultRow)
FAULT_COLUMNS: tuple[str, ...] = tuple(c.name for c in FAULT)


def check_columns(row: Mapping[str, object], index: int) -> None:
    """Raise ValueError naming the missing and unknown columns of a leakage row."""
    keys = set(row)
    missing = [c for c in LEAKAGE_COLUMNS if c not in keys]
    unknown = sorted(str(k) for k in keys - set(LEAKAGE_COLUMNS))
    if missing or unknown:
        raise ValueError(f"row {index}: missing columns {missing}, unknown columns {unknown}")


def _table(name: str, columns: tuple[Column, ...], *extra: str) -> str:
    """CREATE TABLE with an ``id`` key, the row's columns, then ``extra`` definitions."""
    body = ",\n    ".join(("id INTEGER PRIMARY KEY", *(c.ddl for c in columns), *extra))
    return f"CREATE TABLE {name} (\n    {body}\n)"


# The whole schema (version SCHEMA_VERSION). runs, rounds and captures are the store's own
# bookkeeping; reconstructions and faults are the row types above.
SCHEMA_SQL: tuple[str, ...] = (
    """CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,            -- UTC, ISO 8601
    finished TEXT,                    -- NULL while running (or if the process died)
    resumed INTEGER NOT NULL,         -- 1 for an invocation of fl-sim run --resume
    config TEXT NOT NULL,             -- JSON of fl_sim.config.RunConfig
    judge_arch TEXT,
    judge_dataset TEXT,
    judge_accuracy REAL,
    judge_path TEXT,
    judge TEXT,                       -- JSON: the judge's whole record (fl_sim.evaluation.judge)
    versions TEXT NOT NULL            -- JSON: library versions
)""",
    """CREATE TABLE rounds (
    arm TEXT NOT NULL,
    round INTEGER NOT NULL CHECK (round >= 1),
    run_id INTEGER NOT NULL REFERENCES runs (id),
    accuracy REAL,                    -- global model's test accuracy after the round
    seconds REAL NOT NULL,
    replies INTEGER NOT NULL,
    captures INTEGER NOT NULL,
    attacked INTEGER NOT NULL,
    checkpoint TEXT NOT NULL,         -- global model after the round, relative to the out dir
    finished TEXT NOT NULL,
    PRIMARY KEY (arm, round)
)""",
    """CREATE TABLE captures (
    arm TEXT NOT NULL,
    round INTEGER NOT NULL,
    client INTEGER NOT NULL,
    attacked INTEGER NOT NULL,
    path TEXT,                        -- saved capture file (save_captures), else NULL
    PRIMARY KEY (arm, round, client),
    FOREIGN KEY (arm, round) REFERENCES rounds (arm, round)
)""",
    _table(
        "reconstructions",
        LEAKAGE,
        "grid TEXT",  # the round's image grid, relative to the out dir
        "UNIQUE (arm, round, client, attack, sample)",
        "FOREIGN KEY (arm, round) REFERENCES rounds (arm, round)",
    ),
    _table(
        "faults",
        FAULT,
        "UNIQUE (arm, round, node)",
        "FOREIGN KEY (arm, round) REFERENCES rounds (arm, round)",
    ),
)
