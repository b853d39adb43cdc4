"""One writer per out directory: exclusive ``flock`` locks on files in it.

``fl-sim run``/``deploy`` hold ``.fl-sim.lock`` for the whole run and the ServerApp, the
process that writes the results, holds ``.fl-sim-writer.lock`` for its lifetime. A second
run or ``--resume`` on the same directory is refused while either is held, with the holder's
pid. The kernel drops a lock when its holder dies, so a killed run leaves no stale lock.

The run lock also tells a ServerApp started by an fl-sim command (``SUPERVISED_ENV`` set in
the Flower processes' environment) whether that command still stands behind it: the
command drops it the moment it dies or starts to stop the run, and from then on the
ServerApp commits no round (``supervisor_gone``), so a kill never commits a round that the
teardown damaged.
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
SUPERVISED_ENV = "FL_SIM_SUPERVISED"  # "1": the run lock's holder started this ServerApp


_HELD: set[OutLock] = set()  # locks this process holds now


def release_held_locks() -> None:
    """Drop every lock this process holds: the first thing an interrupted fl-sim command
    does (its signal handler), so its ServerApp stops committing before the teardown."""
    for lock in list(_HELD):
        lock.release()


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
        _HELD.add(self)
        return self

    def release(self) -> None:
        _HELD.discard(self)
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor drops the lock

    def __enter__(self) -> OutLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def is_held(out_dir: str | Path, name: str) -> bool:
    """Whether some process holds ``name`` in ``out_dir`` (a shared lock taken and dropped
    at once; nothing is written)."""
    try:
        fd = os.open(Path(out_dir) / name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the shared lock, if taken
    return False


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


def supervisor_gone(out_dir: str | Path) -> bool:
    """Whether this process was started by an fl-sim command that has since died or begun
    to stop the run (it no longer holds the run lock). False when not started by one (a
    ServerApp under a SuperLink of its own, e.g. in a container)."""
    return os.environ.get(SUPERVISED_ENV) == "1" and not is_held(out_dir, RUN_LOCK)


def writer_lock(out_dir: str | Path) -> OutLock:
    """The lock the ServerApp holds while it writes ``out_dir``."""
    return OutLock(out_dir, WRITER_LOCK, "ServerApp")
