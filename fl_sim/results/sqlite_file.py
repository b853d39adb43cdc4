"""One SQLite file of durable results: autocommit mode with explicit transactions, WAL,
synchronous FULL (a committed transaction survives power loss), foreign keys, and a schema
version checked on open. The run store and the trial store both build on it.

A damaged file (garbled or truncated pages, not a database at all) is a ``StoreDamaged``
error naming the file, never a raw ``sqlite3.DatabaseError``; a read-only open
(``readonly=True``) never creates a schema or changes the file's content."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Self


class StoreDamaged(ValueError):
    """A results file SQLite cannot read (the CLI reports it in one line, exit code 2)."""


def damaged(path: Path, err: Exception) -> StoreDamaged:
    """The one-line error for ``path`` that SQLite refused with ``err``."""
    return StoreDamaged(
        f"{path} is damaged ({err}): restore it from a backup or start the run again in "
        "another out directory"
    )


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing file (SQLite's ``mode=ro``). Without a WAL file
    beside it, every committed transaction is in the file itself: it is opened
    ``immutable``, so SQLite creates no ``-wal``/``-shm`` files beside the user's data."""
    flags = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


class SqliteFile:
    """``path`` opened (and created with ``schema`` at ``version`` when new, unless
    ``readonly``); a file written with another schema version, or not by us, is refused with
    a clear error."""

    def __init__(
        self, path: Path, schema: Sequence[str], version: int, readonly: bool = False
    ) -> None:
        self.path = path
        try:
            if readonly:
                self.conn = open_readonly(path)
            else:
                self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
                self.conn.row_factory = sqlite3.Row
        except sqlite3.Error as err:  # e.g. no permission: not a damaged file
            raise StoreDamaged(f"{path} cannot be opened ({err})") from None
        try:
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("PRAGMA foreign_keys=ON")
            self._create(schema, version, readonly)
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise damaged(path, err) from None
        except BaseException:
            self.conn.close()
            raise

    def _create(self, schema: Sequence[str], version: int, readonly: bool) -> None:
        found = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if found == version:
            return
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if found != 0 or tables:
            raise ValueError(f"{self.path} has schema version {found}; this fl-sim reads {version}")
        if readonly:
            what = "an empty file" if self.path.stat().st_size == 0 else "an empty database"
            raise StoreDamaged(f"{self.path} is {what}, not a results store: nothing to read")
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
