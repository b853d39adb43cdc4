"""What ``flwr run --stream`` prints, split: the ServerApp's own lines to the console,
Flower's log records (INFO/WARNING/ERROR lines, their continuation lines such as a
traceback, and the flwr CLI's chatter) to a log file in the out dir, unless verbose.

Nothing written to a file or pipe carries ANSI codes. On a terminal the ServerApp's
progress lines (``fl_sim.ops.progress.PROGRESS``) become tqdm bars: round lines are printed
and move the rounds bar, attack lines only move the attacks bar.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import IO, Any

from fl_sim.ops.progress import PROGRESS, is_terminal
from fl_sim.ops.root_cause import EXCEPTION, RootCause, root_cause

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
FLOWER_RECORD = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s*:")
FLWR_CLI = re.compile(
    r"^(Using SuperLink|Successfully (started run|installed|built)|Loading project|"
    r"Starting logstream|An unhandled exception occurred|For more information, visit:)"
)
# Lines that continue a Flower record: indented, blank, or a traceback's frames and error.
CONTINUATION = re.compile(
    r"^(\s|$|Traceback |During handling|The above exception|[\w.]+(Error|Exception|Exit|"
    r"Interrupt)\b)"
)
FLOWER_LOG = "flower.log"
ERROR_TAIL = 12  # lines of the last Flower error record kept for the failure message
ERROR_LINES = 2000  # lines of all error records kept to find the root cause


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


class Console:
    """Routes a stream of lines; use as a context manager (closes the log, the bars).

    Flower's records go to ``log_path`` (overwritten unless ``append``; None: not written
    here, e.g. where the caller keeps a raw log) and to the console only if ``verbose``."""

    def __init__(
        self,
        log_path: Path | None,
        verbose: bool = False,
        append: bool = False,
        out: IO[str] | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.terminal = is_terminal(self.out) if terminal is None else terminal
        self.verbose = verbose
        self.log_path = log_path
        self.log: IO[str] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            mode = "a" if append else "w"
            self.log = open(log_path, mode, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.in_flower = False  # the previous line belonged to a Flower record
        self.last_error: list[str] = []  # the last ERROR record, for a failure message
        self.error_lines: list[str] = []  # lines of ERROR records but a ClientApp's
        self.in_error = False
        self.in_traceback = False  # inside a traceback's frames, before its exception line
        self.in_cause = False  # in an error record that may say why a run stopped
        self.bars: dict[str, Any] = {}

    def feed(self, raw: str) -> None:
        """Route one line of ``flwr run`` output (with or without its newline)."""
        line = strip_ansi(raw.rstrip("\r\n"))
        if FLOWER_RECORD.match(line) or FLWR_CLI.match(line):
            self.in_flower = True
            self.in_error = line.startswith(("ERROR", "CRITICAL"))
            self.in_traceback = False
            # a ClientApp's exception is a client fault the run survives, not why it stopped
            self.in_cause = self.in_error and "ClientApp" not in line
            if self.in_error:
                self.last_error = []
        elif self.in_flower and self.in_traceback and EXCEPTION.match(line):
            self.in_traceback = False  # the exception that ends a traceback, of any name
        elif not (self.in_flower and CONTINUATION.match(line)):
            self.in_flower = self.in_error = self.in_traceback = False
        elif line.startswith("Traceback "):
            self.in_traceback = True
        if self.in_flower:
            if self.in_error:
                self.last_error = (self.last_error + [line])[-ERROR_TAIL:]
            if self.in_error and self.in_cause:
                self.error_lines.append(line)
                if len(self.error_lines) > 2 * ERROR_LINES:
                    del self.error_lines[:-ERROR_LINES]
            if self.log is not None:
                self.log.write(line + "\n")
                self.log.flush()
            if self.verbose:
                self._show(line)
            return
        self._show(line)

    def _show(self, line: str) -> None:
        match = PROGRESS.match(line) if self.terminal else None
        if match is None:
            self._write(line)
            return
        bar = self._bar(match["kind"], int(match["total"]))
        bar.set_description(f"[{match['who']}] {match['kind']}")
        bar.n = int(match["n"])
        bar.refresh()
        if match["kind"] == "rounds":
            self._write(line)

    def _bar(self, kind: str, total: int) -> Any:
        from tqdm import tqdm

        bar = self.bars.get(kind)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, position=len(self.bars), leave=False, file=self.out)
            self.bars[kind] = bar
        return bar

    def _write(self, line: str) -> None:
        if self.bars:
            from tqdm import tqdm

            tqdm.write(line, file=self.out)
        else:
            self.out.write(line + "\n")
            self.out.flush()

    def root_cause(self) -> RootCause | None:
        """The exception that ended the last traceback Flower logged here, if any."""
        return root_cause(self.error_lines)

    def failure_hint(self) -> str:
        """Why a run failed: the root cause of the last traceback (exception, message, where
        in our code), else the last Flower error's first and last line; and the log file."""
        where = f"; Flower's log: {self.log_path}" if self.log_path else ""
        cause = self.root_cause()
        if cause is not None:
            return f"{cause}{where}"
        if not self.last_error:
            return where.lstrip("; ")
        first, last = self.last_error[0], self.last_error[-1]
        summary = first if first == last else f"{first} ... {last.strip()}"
        return f"{summary}{where}"

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        if self.log is not None:
            self.log.close()
            self.log = None

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
