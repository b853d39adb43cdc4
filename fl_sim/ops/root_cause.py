"""The root cause of a failed federation, read from Flower's log records: the exception that
ended the last traceback (type and message) and the deepest frame of this project's code, so
the CLI's one line says what broke and where instead of Flower's exit code."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)')
# an exception line: a (dotted) name at the start of the line, optionally ": message"
EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
PROJECT_PACKAGES = ("fl_sim", "attacks", "models", "experiments")
# what Ray says when its node does not come up in time (a fixed 30 s, on a busy machine)
ENGINE_START_FAILURES = ("The current node timed out during startup",)


@dataclass(frozen=True)
class RootCause:
    """The exception that ended a traceback and where this project's code last was."""

    type: str
    message: str
    where: str = ""  # e.g. "fl_sim/results/store.py:193 in commit_round"

    def __str__(self) -> str:
        text = f"{self.type}: {self.message}" if self.message else self.type
        return f"{text} (at {self.where})" if self.where else text


def project_path(path: str) -> str | None:
    """``path`` from this project's package on (``.../fl_sim/x.py`` -> ``fl_sim/x.py``), or
    None for a frame outside it (Flower, Ray, the standard library)."""
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:  # installed: only a top-level package of ours
        below = parts.index("site-packages") + 1
        starts = [below] if parts[below:-1] and parts[below] in PROJECT_PACKAGES else []
    else:
        starts = [i for i, part in enumerate(parts[:-1]) if part in PROJECT_PACKAGES]
    return "/".join(parts[starts[0] :]) if starts else None


def root_cause(lines: Sequence[str]) -> RootCause | None:
    """The cause of the last traceback in ``lines`` (log lines, without ANSI codes), or None
    when there is none. With chained exceptions the last one is taken: it is the one raised
    out of the code, and ours carry the file and what to do."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not starts:
        return None
    where = ""
    for line in lines[starts[-1] + 1 :]:
        frame = FRAME.match(line)
        if frame:
            path = project_path(frame["path"])
            if path is not None:
                where = f"{path}:{frame['line']} in {frame['fn']}"
            continue
        if line[:1].isspace() or not line:
            continue  # a frame's source line or its ^^^ marker
        match = EXCEPTION.match(line)
        if match is not None:
            return RootCause(match["type"], (match["message"] or "").strip(), where)
    return None


def engine_start_failed(lines: Sequence[str]) -> bool:
    """Whether Flower's error records ``lines`` say the simulation engine (Ray) failed to
    start in time: worth a retry, unlike a fault of the run itself."""
    return any(text in line for line in lines for text in ENGINE_START_FAILURES)
