"""Temporary directories of a run (Flower homes, deployment work dirs) that never outlive it.

Removed when the block ends, also on Ctrl-C or SIGTERM, and by the watchdog when fl-sim is
SIGKILLed; ``keep`` (``--keep-temp``) keeps them and says where.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from fl_sim.ops import watchdog


@contextlib.contextmanager
def temp_dir(
    prefix: str,
    what: str,
    say: Callable[[str], None],
    keep: bool = False,
    keep_on_error: bool = False,
) -> Iterator[Path]:
    """A new directory ``<system temp>/<prefix>XXXXXXXX`` for the block; removed at its end
    unless ``keep`` (or, with ``keep_on_error``, the block raised an error, not an interrupt:
    its logs explain the error). ``what`` names the contents when it is kept."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    guard = watchdog.current()
    if guard is not None and not keep:
        guard.remove(path)
    failed = False
    try:
        yield path
    except Exception:
        failed = True
        raise
    finally:
        if keep or (failed and keep_on_error):
            if guard is not None:
                guard.keep(path)
            say(f"kept {what} in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
