"""A watchdog process that ends what ``fl-sim`` started when ``fl-sim`` itself dies.

Flower's SuperLink starts its SuperExec, which starts the ServerApp (and Ray its workers), each
in a new session: a SIGKILLed ``fl-sim`` (no ``finally`` runs) would leave them all running,
writing the out directory. So ``fl-sim`` starts this small process in a session of its own
(a kill of fl-sim's process group spares it) with the read end of a pipe whose write end
only ``fl-sim`` holds, and tells it each process it starts and each temporary dir it makes.
The watchdog follows those processes and all their descendants (by parent pid, in /proc);
when the pipe reaches EOF (fl-sim exited, however) or its parent changes, it ends every
one still alive (SIGTERM children first, SIGKILL after a grace period), removes the dirs and
exits. On a normal exit fl-sim has already stopped everything and this finds nothing left.

Protocol, one line each: ``watch PID``, ``remove PATH`` (delete at the end), ``keep PATH``
(do not), ``bye`` (a normal exit: do the same, quietly).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from fl_sim.ops import proctree

GRACE_S = 5.0  # SIGTERM -> SIGKILL
INTERVAL_S = 0.5  # how often the process tree is read while fl-sim runs (~1% of a core)


def say(text: str) -> None:
    print(f"fl-sim watchdog: {text}", file=sys.stderr, flush=True)


# --- the watchdog process -------------------------------------------------------------------


def serve(parent: int, grace: float, interval: float, fd: int = 0) -> int:
    """Follow what ``parent`` registers on ``fd`` until EOF, then end it all; exit code."""
    tree = proctree.Tree()
    own = proctree.read_proc(parent)
    leads_group = own is not None and own.pgid == parent  # fl-sim's job: its process group
    remove: dict[str, bool] = {}  # path -> remove at the end
    pending, normal = b"", False
    while True:
        ready, _, _ = select.select([fd], [], [], interval)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                verb, _, arg = line.decode(errors="replace").partition(" ")
                if verb == "watch" and arg.isdigit():
                    tree.add(int(arg))
                elif verb in ("remove", "keep") and arg:
                    remove[arg] = verb == "remove"
                elif verb == "bye":
                    normal = True
        tree.refresh()
        if os.getppid() != parent:  # died, while a forked child still holds the pipe open
            break

    if leads_group:  # also what the tree missed: started and orphaned between two reads
        for proc in proctree.snapshot().values():  # (Ray's agents when its raylet died)
            if proc.pgid == parent and proc.alive:
                tree.add(proc.pid)

    def to_end() -> list[proctree.Proc]:  # fl-sim may watch itself (its children): never it
        return [p for p in tree.refresh() if p.pid not in (parent, os.getpid())]

    left = to_end()
    names = ", ".join(f"{proctree.name(p.pid)} ({p.pid})" for p in left)
    if left and not normal:
        say(f"fl-sim (pid {parent}) is gone; ending the {len(left)} processes it left: {names}")
    # After a normal exit, stragglers are usually Ray workers still shutting down: end them
    # quietly, unless one would not go without SIGKILL.
    killed = proctree.end_tree(to_end, grace) if left else 0
    if killed and normal:
        say(f"ended {len(left)} processes left after fl-sim stopped ({killed} needed SIGKILL): "
            f"{names}")  # fmt: skip
    for path, wanted in remove.items():
        if wanted and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            if not normal:
                say(f"removed {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fl-sim-watchdog", description=__doc__)
    parser.add_argument("--parent", type=int, required=True, help="pid of the fl-sim process")
    parser.add_argument("--grace", type=float, default=GRACE_S)
    parser.add_argument("--interval", type=float, default=INTERVAL_S)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP):  # only EOF (or its parent's death) ends it
        signal.signal(sig, signal.SIG_IGN)
    return serve(args.parent, args.grace, args.interval)


# --- fl-sim's side --------------------------------------------------------------------------


class Watchdog:
    """fl-sim's handle on its watchdog process (a no-op where there is no /proc)."""

    def __init__(self, grace: float = GRACE_S, interval: float = INTERVAL_S) -> None:
        self.grace, self.interval = grace, interval
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    def start(self) -> Watchdog:
        if not proctree.available():
            return self
        read, self._fd = os.pipe()  # both non-inheritable: no child of fl-sim gets the write end
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable, "-m", "fl_sim.ops.watchdog", "--parent", str(os.getpid()),
            "--grace", str(self.grace), "--interval", str(self.interval),
        ]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=read, stdout=subprocess.DEVNULL, env=env, start_new_session=True
            )
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        finally:
            os.close(read)
        return self

    def _send(self, line: str) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, f"{line}\n".encode())
            except OSError:  # the watchdog died: nothing left to tell
                os.close(self._fd)
                self._fd = None

    def watch(self, pid: int) -> None:
        """End ``pid`` and all its descendants if fl-sim dies (fl-sim's own pid: only its
        descendants; the watchdog never ends fl-sim or itself)."""
        self._send(f"watch {pid}")

    def remove(self, path: Path) -> None:
        """Delete ``path`` when the watchdog ends (after fl-sim, normally or not)."""
        self._send(f"remove {path}")

    def keep(self, path: Path) -> None:
        """Do not delete ``path`` after all."""
        self._send(f"keep {path}")

    def close(self) -> None:
        """A normal exit: let the watchdog end any straggler and the dirs, and wait for it."""
        self._send("bye")
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=self.grace + 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_active: Watchdog | None = None
_depth = 0
_active_lock = threading.Lock()


@contextlib.contextmanager
def watching(grace: float = GRACE_S) -> Iterator[Watchdog]:
    """This process's watchdog for the duration of the block: started by the outermost block,
    shared by nested ones, closed when the outermost ends. Left running on a Ctrl-C: the
    interrupted CLI ends its processes and exits at once, and the watchdog ends whatever is
    left when it does, instead of the CLI waiting out the watchdog's grace period first."""
    global _active, _depth
    with _active_lock:
        if _active is None:
            _active = Watchdog(grace).start()
        _depth += 1
        watchdog = _active
    interrupted = False
    try:
        yield watchdog
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with _active_lock:
            _depth -= 1
            done = _depth == 0
            if done:
                _active = None
        if done and not interrupted:
            watchdog.close()


def current() -> Watchdog | None:
    """The active watchdog (inside a ``watching()`` block), else None."""
    return _active


def watch(pid: int) -> None:
    """Register ``pid`` with the active watchdog, if there is one."""
    if _active is not None:
        _active.watch(pid)


if __name__ == "__main__":
    sys.exit(main())
