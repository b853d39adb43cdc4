"""Supervising a deployment's run: submit it with ``flwr run``, stream its log, watch the
role processes, read back its final status, and stop what was started without being cut short.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fl_sim.ops import watchdog
from fl_sim.ops.console import Console
from fl_sim.ops.launcher import (
    ManagedProcess,
    SuperLinkError,
    connection_toml,
    flower_env,
    project_dir,
    wait_healthy,
)
from fl_sim.ops.roles import CONNECTION, FlowerRun, submit_command


class DeployError(SuperLinkError):
    """The federation could not be brought up (the message names the log to read)."""


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while cleaning up, so a second one cannot cut it short."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a held signal is delivered now


def health_url(address: str, ca: Path | None) -> str:
    return f"{'http' if ca is None else 'https'}://{address}/health"


def tls_context(ca: Path | None) -> ssl.SSLContext | bool:
    return True if ca is None else ssl.create_default_context(cafile=str(ca))


# The ServerApp's own timing of a whole federation (all rounds of one arm).
ARM_DONE = re.compile(r"=== arm \w+ done in ([0-9.]+)s ===")
RUN_STARTED = re.compile(r"Successfully started run (\d+)")


@dataclass
class SubmitResult:
    """How a submitted run went: ``flwr run``'s exit code, and the run as the SuperLink saw it.

    ``flwr run --stream`` exits 0 even when the ServerApp raised, so success is the run's
    final status (``finished:completed``), read back with ``flwr ls``.
    """

    code: int
    run_id: str | None = None
    status: str = ""
    details: str = ""
    arm_seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.status == "finished:completed"


def stream_submit(
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    watch: list[ManagedProcess],
    verbose: bool = False,
    flower_log: Path | None = None,
) -> SubmitResult:
    """Run ``flwr run``, log its output, echo the ServerApp's lines (Flower's records too if
    ``verbose``; they also go to ``flower_log`` if given: ``fl_sim.ops.console``), and abort
    if a watched process dies.

    Notes the run id and the seconds each arm's federation took, as the ServerApp measured
    them (its "=== arm ... done in" lines).
    """
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    watchdog.watch(proc.pid)
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    result = SubmitResult(code=-1)
    try:
        with open(log_path, "ab") as log, Console(flower_log, verbose) as console:
            while True:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    dead = [p for p in watch if p.exited()]
                    if dead:
                        p = dead[0]
                        assert p.proc is not None
                        raise DeployError(
                            f"{p.name} exited with code {p.proc.returncode} during the run; "
                            f"see {p.log_path}"
                        ) from None
                    continue
                if line is None:
                    break
                log.write(line)
                log.flush()
                text = line.decode(errors="replace")
                console.feed(text)
                if match := ARM_DONE.search(text):
                    result.arm_seconds.append(float(match.group(1)))
                elif match := RUN_STARTED.search(text):
                    result.run_id = match.group(1)
        result.code = proc.wait()
        return result
    finally:
        with signals_deferred():
            _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``flwr run`` (its own process group) if it is still running."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_status(env: dict[str, str], run_id: str, wait_s: float = 15.0) -> tuple[str, str]:
    """(status, details) of a run from ``flwr ls``; waits briefly for it to be finished."""
    cmd = ["flwr", "ls", CONNECTION, "--run-id", run_id, "--format", "json"]
    deadline = time.monotonic() + wait_s
    status, details = "unknown", ""
    while True:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        try:
            runs = json.loads(proc.stdout).get("runs", [])
            run = next(r for r in runs if str(r.get("run-id")) == run_id)
            status, details = str(run.get("status", "")), str(run.get("status-details", ""))
        except (json.JSONDecodeError, StopIteration, AttributeError):
            details = (proc.stdout + proc.stderr).strip()[-500:]
        if status.startswith("finished") or time.monotonic() > deadline:
            return status, details
        time.sleep(0.5)


def write_connection(flwr_home: Path, address: str, ca: Path | None) -> None:
    """Private ``$FLWR_HOME/config.toml`` with the connection ``flwr run`` submits to."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(connection_toml(CONNECTION, address, ca))


def submit(
    run: FlowerRun,
    superlink: str,
    ca: Path | None,
    workdir: Path,
    watch: list[ManagedProcess] | None = None,
    wait_s: float = 60.0,
    verbose: bool = False,
    flower_log: Path | None = None,
) -> SubmitResult:
    """Wait for the SuperLink's health endpoint, ``flwr run`` the project on it, and read
    back the run's final status. ``flwr run`` is ended with us, even if we are SIGKILLed."""
    home = workdir / "flwr-cli"
    write_connection(home, superlink, ca)
    wait_healthy(health_url(superlink, ca), watch or [], wait_s, tls_context(ca))
    cmd = submit_command(project_dir(), CONNECTION, run)
    env = flower_env(home)
    with watchdog.watching():
        result = stream_submit(cmd, env, workdir / "flwr-run.log", watch or [], verbose, flower_log)
    if result.run_id is not None:
        result.status, result.details = run_status(env, result.run_id)
    return result
