"""One writer per out directory: exclusive ``flock`` locks on files in it.

``fl-sim run``/``deploy`` hold ``.fl-sim.lock`` for the whole run and the ServerApp, the
process that writes the results, holds ``.fl-sim-writer.lock`` for its lifetime. A second
run or ``--resume`` on the same directory is refused while either is held, with the holder's
pid. The kernel drops a lock when its holder dies, so a killed run leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

RUN_LOCK = ".fl-sim.lock"  # the fl-sim command running on the directory
WRITER_LOCK = ".fl-sim-writer.lock"  # the ServerApp writing results into it


class OutDirBusy(FileExistsError):
    """Another process holds the out directory (the CLI reports it with exit code 2)."""


class OutLock:
    """An exclusive, non-blocking ``flock`` on ``out_dir/name``, naming its holder in the file."""

    def __init__(self, out_dir: str | Path, name: str, holder: str) -> None:
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.path = self.out_dir / name
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> OutLock:
        """Take the lock (creating the directory) or raise ``OutDirBusy`` naming the holder."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            pid, _, name = who.partition(" ")
            holder = f"{name or 'another process'} (pid {pid})" if pid else "another process"
            raise OutDirBusy(
                f"{self.out_dir} is in use: {holder} is writing it; wait for it to finish "
                "or stop it, then try again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.holder}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None

    def __enter__(self) -> OutLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def check_free(out_dir: str | Path, name: str) -> None:
    """Raise ``OutDirBusy`` if ``name`` is held in ``out_dir`` (taking it for a moment)."""
    if (Path(out_dir) / name).exists():
        OutLock(out_dir, name, "a check").acquire().release()


@contextlib.contextmanager
def run_lock(out_dir: str | Path, holder: str) -> Iterator[OutLock]:
    """What an fl-sim command holds while it runs on ``out_dir``: the run lock, taken once no
    ServerApp (e.g. one left by a killed run) is writing the directory."""
    with OutLock(out_dir, RUN_LOCK, holder) as lock:
        check_free(out_dir, WRITER_LOCK)
        yield lock


def writer_lock(out_dir: str | Path) -> OutLock:
    """The lock the ServerApp holds while it writes ``out_dir``."""
    return OutLock(out_dir, WRITER_LOCK, "ServerApp")
