"""Atomic file writes that leave nothing behind: a temp file in the target's directory,
fsync, rename over the target, fsync of the directory; on any failure (disk full, no
permission, a directory in the way, an interrupt) the temp file is removed and the target
is as it was.

Standard library only, so every layer (data loaders, attacks, results) can use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "temp_name"]


def temp_name(path: Path) -> Path:
    """The temp file of an atomic write of ``path``: hidden, beside it, one per process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "wb", perms: int = 0o644, durable: bool = True
) -> Iterator[IO[Any]]:
    """Open a temp file for writing (``mode`` "wb" or "w"); on a clean exit it replaces
    ``path``. ``perms`` are the new file's permission bits (0o600 for sensitive data).
    ``durable``: fsync the file and its directory (a committed file survives power loss)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode {mode!r}; valid: wb, w")
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():  # mkdir would say "File exists"
        raise NotADirectoryError(
            f"{path.parent} is a file where a directory is needed; move it away"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # os.replace would fail after the whole write
        raise IsADirectoryError(f"{path} is a directory, not a file; move it away")
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, perms)
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            # a failed write names no file ("No space left on device"): name the target
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise
    if durable:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
