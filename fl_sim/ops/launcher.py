"""Run the apps on Flower's simulation engine through ``flwr run``, with a private SuperLink.

We start our own SuperLink (simulation mode, free port, in-memory state, private
FLWR_HOME) instead of Flower's shared "local" one, which would outlive the run and keep
whatever environment it was started with; and we stop it when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from fl_sim.ops import proctree, watchdog
from fl_sim.ops.console import FLOWER_LOG, Console
from fl_sim.ops.outlock import SUPERVISED_ENV
from fl_sim.ops.roles import FlowerRun
from fl_sim.ops.tempdirs import temp_dir

CONNECTION = "fl-sim"


class SuperLinkError(RuntimeError):
    """The private SuperLink could not be started."""


def project_dir() -> Path:
    """The Flower app directory (holds pyproject.toml with [tool.flwr.app])."""
    root = Path(__file__).resolve().parents[2]  # the checkout: fl_sim/ops/launcher.py
    pyproject = root / "pyproject.toml"
    if not pyproject.exists() or "[tool.flwr.app]" not in pyproject.read_text():
        raise FileNotFoundError(
            f"no Flower app project at {root}: run fl-sim from a source checkout "
            "installed with `pip install -e .`"
        )
    return root


def flwr_cli() -> str:
    """The ``flwr`` executable of this interpreter's environment."""
    beside = Path(sys.executable).parent / "flwr"
    found = str(beside) if beside.exists() else shutil.which("flwr")
    if found is None:
        raise FileNotFoundError(
            "the flwr command is not installed (pip install 'flwr[simulation]')"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: private home, no runtime installs, quiet Ray."""
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        PYTHONUNBUFFERED="1",
    )
    # Flower spawns flower-superexec, flwr-serverapp and flwr-clientapp by name: find ours.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", "")) if p)
    root = str(project_dir())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class ManagedProcess:
    """A child process in its own session (process group) that logs to a file.

    Stopping it signals the whole group, so whatever it spawned in that group (a SuperNode's
    SuperExec and ClientApps, a SuperExec's ServerApp) ends with it, and then whatever it
    spawned in other sessions; the watchdog (if active) ends them all if fl-sim dies.
    """

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.cmd, self.env, self.log_path = name, cmd, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        watchdog.watch(self.proc.pid)
        return self

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def terminate(self) -> None:
        """Send SIGTERM to the process group (no wait)."""
        if self.proc is not None:
            _signal_group(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, wait for it to empty, SIGKILL whatever is left."""
        stop_all([self], timeout)


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it has no members left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # macOS: a group of zombies only; nothing left to stop
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no procfs: zombies count as alive
        return _signal_group(pgid, 0)
    return any(g == pgid and state != "Z" for state, _, g in process_table().values())


def process_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) of every process, from /proc/*/stat."""
    return {pid: (p.state, p.ppid, p.pgid) for pid, p in proctree.snapshot().items()}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: Flower and Ray start theirs in other process groups."""
    return proctree.descendants(pid)


def stop_all(procs: list[ManagedProcess], timeout: float = 20.0) -> None:
    """Stop several managed processes at once: SIGTERM every group, wait, then SIGKILL; then
    whatever they had started in other sessions (e.g. a SuperLink's SuperExec and ServerApp)."""
    started = [p for p in procs if p.proc is not None]
    tree: list[proctree.Proc] = []
    if proctree.available():
        table = proctree.snapshot()
        for p in started:
            tree += [table[q] for q in proctree.descendants(p.pid, table) if q in table]
    for p in started:
        p.terminate()
    deadline = time.monotonic() + timeout
    for p in started:
        assert p.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    # Members of a group may outlive its leader (e.g. a ClientApp still finishing).
    while time.monotonic() < deadline and any(group_alive(p.pid) for p in started):
        time.sleep(0.1)
    for p in started:
        _signal_group(p.pid, signal.SIGKILL)
        assert p.proc is not None
        p.proc.wait()
    deadline = time.monotonic() + 5  # SIGKILLed members take a moment to die
    while time.monotonic() < deadline and any(group_alive(p.pid) for p in started):
        time.sleep(0.05)
    proctree.end_tree(lambda: [q for q in tree if proctree.is_same(q)], grace=5.0)


def wait_healthy(
    url: str,
    procs: list[ManagedProcess],
    timeout: float,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll ``url`` until it answers 2xx; fail early, naming the log, if a process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.exited():
                assert p.proc is not None
                raise SuperLinkError(
                    f"{p.name} exited with code {p.proc.returncode}; see {p.log_path}"
                )
        try:
            if httpx.get(url, timeout=0.5, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    logs = ", ".join(str(p.log_path) for p in procs)
    raise SuperLinkError(f"{url} did not answer in {timeout:.0f}s; see {logs}")


# Ray's AF_UNIX sockets live under $RAY_TMPDIR/ray/session_<time>_<pid>/sockets/: at most
# 107 bytes in all, of which Ray's part takes up to ~67. A longer home keeps Ray's default.
RAY_TMPDIR_MAX = 40


class LocalSuperLink:
    """A simulation-mode SuperLink on 127.0.0.1 for the duration of a ``with`` block."""

    def __init__(self, flwr_home: Path, startup_timeout: float = 60.0) -> None:
        self.flwr_home = flwr_home
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = flwr_home / "superlink.log"
        self._managed: ManagedProcess | None = None

    def __enter__(self) -> LocalSuperLink:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            connection_toml(CONNECTION, f"127.0.0.1:{self.port}", None)
        )
        cmd = [
            "flower-superlink", "--insecure", "--simulation", "--isolation", "subprocess",
            "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        env = flower_env(self.flwr_home)
        env[SUPERVISED_ENV] = "1"  # its ServerApp commits rounds only while fl-sim run holds
        # the out dir's run lock
        if "RAY_TMPDIR" not in os.environ and len(str(self.flwr_home)) <= RAY_TMPDIR_MAX:
            env["RAY_TMPDIR"] = str(self.flwr_home)  # Ray's session dir goes with the home
        self._managed = ManagedProcess("flower-superlink", cmd, env, self.log_path).start()
        self.proc = self._managed.proc
        try:
            wait_healthy(
                f"http://127.0.0.1:{self.port}/health", [self._managed], self.startup_timeout
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The SuperLink's group, then its SuperExec, ServerApp and Ray (other sessions).
        if self._managed is not None:
            self._managed.stop(timeout=20)


def connection_toml(name: str, address: str, root_certificates: Path | None) -> str:
    """``$FLWR_HOME/config.toml`` naming one SuperLink connection (and making it the default)."""
    tls = (
        "insecure = true\n"
        if root_certificates is None
        else f'root-certificates = "{root_certificates}"\n'
    )
    return f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\naddress = "{address}"\n{tls}'


def federation_config(run: FlowerRun) -> str:
    """Simulation engine settings: one virtual SuperNode per client with the configured Ray
    resources (``client_cpus``, fractional ``client_gpus``), quiet Ray."""
    return (
        f"num-supernodes={run.clients} client-resources-num-cpus={run.runtime.client_cpus} "
        f"client-resources-num-gpus={run.runtime.client_gpus} "
        "init-args-log-to-driver=false init-args-logging-level='ERROR'"
    )


def run_simulation(
    run: FlowerRun,
    console: Console | None = None,
    flwr_home: Path | None = None,
    keep_temp: bool = False,
) -> int:
    """``flwr run`` the project with this config on a private SuperLink; returns its exit code.

    Its output goes through ``console`` (default: one that logs Flower's records to
    ``flower.log`` in the out dir). Its Flower home (SuperLink log, the app, Ray's session)
    is a temporary dir unless ``flwr_home`` is given, removed afterwards unless ``keep_temp``.
    A watchdog ends every process started here, and removes the home, if this process dies
    without cleaning up.
    """
    with watchdog.watching(), contextlib.ExitStack() as stack:
        home = flwr_home or stack.enter_context(
            temp_dir("fl-sim-flwr-", "the Flower home (SuperLink and Ray logs)", _say, keep_temp)
        )
        link = stack.enter_context(LocalSuperLink(home))
        cmd = [
            flwr_cli(), "run", str(project_dir()), CONNECTION, "--stream",
            "--run-config", run.run_config_arg,
            "--federation-config", federation_config(run),
        ]  # fmt: skip
        if console is None:
            console = stack.enter_context(Console(run.out / FLOWER_LOG))
        with subprocess.Popen(
            cmd, env=flower_env(link.flwr_home), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
        ) as proc:  # fmt: skip
            watchdog.watch(proc.pid)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    console.feed(line)
                return proc.wait()
            except BaseException:  # Ctrl-C (it got the SIGINT too) or SIGTERM: stop it
                stop_child(proc, timeout=10)
                raise


def stop_child(proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``proc``, then SIGKILL it if it has not ended within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def _say(text: str) -> None:
    print(f"fl-sim: {text}", flush=True)
