"""Process trees from ``/proc``: who is whose child, and ending a whole tree.

Flower and Ray start their processes in new sessions (``start_new_session``), so a process
group does not hold everything a run started; parent links do. Standard library only: the
watchdog process imports this and nothing heavier.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

PROC = Path("/proc")


class Proc(NamedTuple):
    """One process as ``/proc/<pid>/stat`` shows it."""

    pid: int
    state: str  # "Z": a zombie (dead, not yet reaped)
    ppid: int
    pgid: int
    sid: int
    start: int  # start time in clock ticks since boot: (pid, start) names a process uniquely

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def available() -> bool:
    """Whether this system has a Linux-style procfs."""
    return (PROC / "self" / "stat").exists()


def read_proc(pid: int) -> Proc | None:
    """``pid``'s entry, or None if there is no such process (or it is unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:  # plain open: the watchdog polls often
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is stat field 3 (state); field N is fields[N - 3]; starttime is field 22.
    state = fields[0].decode()
    return Proc(pid, state, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def name(pid: int) -> str:
    """A process's command name (``/proc/<pid>/comm``), or "?"."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return "?"


def snapshot() -> dict[int, Proc]:
    """Every process, by pid."""
    table = {}
    for name in os.listdir(PROC):
        if name.isdigit() and (proc := read_proc(int(name))) is not None:
            table[proc.pid] = proc
    return table


def children_of(table: dict[int, Proc]) -> dict[int, list[int]]:
    """Parent pid -> its children's pids."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    return children


def descendants(pid: int, table: dict[int, Proc] | None = None) -> list[int]:
    """Every process below ``pid`` (parents before their children), whatever its session."""
    children = children_of(snapshot() if table is None else table)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def is_same(proc: Proc) -> bool:
    """Whether ``proc`` is still alive and is the same process (its pid was not reused)."""
    now = read_proc(proc.pid)
    return now is not None and now.alive and now.start == proc.start


def signal_all(procs: Iterable[Proc], sig: int) -> None:
    """Send ``sig`` to each process that is still the one recorded, in the order given."""
    for proc in procs:
        if is_same(proc):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)


def end_tree(current: Callable[[], list[Proc]], grace: float, poll: float = 0.1) -> int:
    """End every process ``current()`` lists (parents before children; called again to pick
    up new children): SIGTERM children first, wait up to ``grace`` seconds, then SIGKILL
    whatever is left. Returns how many had to be SIGKILLed."""
    termed: set[tuple[int, int]] = set()
    deadline = time.monotonic() + grace
    while procs := current():
        new = [p for p in reversed(procs) if (p.pid, p.start) not in termed]
        signal_all(new, signal.SIGTERM)
        termed.update((p.pid, p.start) for p in new)
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    killed: set[tuple[int, int]] = set()
    deadline = time.monotonic() + 5.0  # a SIGKILLed process takes a moment to be gone
    while (procs := current()) and time.monotonic() < deadline:
        signal_all(reversed(procs), signal.SIGKILL)
        killed.update((p.pid, p.start) for p in procs)
        time.sleep(poll / 2)
    return len(killed)


class Tree:
    """Processes followed over time: roots added by pid, and every descendant seen while its
    parent is followed, kept even after it is reparented (a parent died) or changed session.

    Call ``refresh`` often enough (e.g. twice a second) to see children before their parent
    exits; (pid, start time) pairs make sure a reused pid is never mistaken for ours.
    """

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}  # insertion order: parents before their children

    def add(self, pid: int) -> None:
        proc = read_proc(pid)
        if proc is not None and proc.alive:
            self.procs.setdefault(pid, proc)

    def refresh(self) -> list[Proc]:
        """Forget the processes that ended, follow new children; the live ones, parents first."""
        table = snapshot()
        for pid, proc in list(self.procs.items()):
            now = table.get(pid)
            if now is None or not now.alive or now.start != proc.start:
                del self.procs[pid]
        children = children_of(table)
        todo = list(self.procs)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in self.procs and table[child].alive:
                    self.procs[child] = table[child]
                    todo.append(child)
        return list(self.procs.values())
