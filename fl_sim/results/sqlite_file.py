"""One SQLite file of durable results: autocommit mode with explicit transactions, WAL,
synchronous FULL (a committed transaction survives power loss), foreign keys, and a schema
version checked on open. The run store and the trial store both build on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self


class SqliteFile:
    """``path`` opened (and created with ``schema`` at ``version`` when new); a file written
    with another schema version is refused with a clear error."""

    def __init__(self, path: Path, schema: Sequence[str], version: int) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        try:
            self._create(schema, version)
        except BaseException:
            self.conn.close()
            raise

    def _create(self, schema: Sequence[str], version: int) -> None:
        found = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if found == version:
            return
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if found != 0 or tables:
            raise ValueError(f"{self.path} has schema version {found}; this fl-sim reads {version}")
        with self.transaction() as db:
            for statement in schema:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
