"""Run the apps on Flower's simulation engine through ``flwr run``, with a private SuperLink.

We start our own SuperLink (simulation mode, free port, in-memory state, private
FLWR_HOME) instead of Flower's shared "local" one, which would outlive the run and keep
whatever environment it was started with; and we stop it when the run ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from fl_sim.config import RunConfig

CONNECTION = "fl-sim"


class SuperLinkError(RuntimeError):
    """The private SuperLink could not be started."""


def project_dir() -> Path:
    """The Flower app directory (holds pyproject.toml with [tool.flwr.app])."""
    root = Path(__file__).resolve().parent.parent
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
    root = str(project_dir())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class LocalSuperLink:
    """A simulation-mode SuperLink on 127.0.0.1 for the duration of a ``with`` block."""

    def __init__(self, flwr_home: Path, startup_timeout: float = 60.0) -> None:
        self.flwr_home = flwr_home
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = flwr_home / "superlink.log"

    def __enter__(self) -> LocalSuperLink:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        cmd = [
            "flower-superlink", "--insecure", "--simulation", "--isolation", "subprocess",
            "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        log = open(self.log_path, "wb")  # noqa: SIM115 - the process owns it until exit
        self.proc = subprocess.Popen(
            cmd,
            env=flower_env(self.flwr_home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SuperLinkError(
                    f"flower-superlink exited with code {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=0.5).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise SuperLinkError(
            f"SuperLink did not start in {self.startup_timeout}s; see {self.log_path}"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the SuperLink and the simulation it spawned
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def federation_config(cfg: RunConfig) -> str:
    """Simulation engine settings: one virtual SuperNode per client, 1 CPU each, quiet Ray."""
    return (
        f"num-supernodes={cfg.clients} client-resources-num-cpus=1 "
        "init-args-log-to-driver=false init-args-logging-level='ERROR'"
    )


def run_simulation(cfg: RunConfig, flwr_home: Path | None = None) -> int:
    """``flwr run`` the project with this config on a private SuperLink; returns its exit code."""
    home = flwr_home or Path(tempfile.mkdtemp(prefix="fl-sim-flwr-"))
    with LocalSuperLink(home) as link:
        cmd = [
            flwr_cli(), "run", str(project_dir()), CONNECTION, "--stream",
            "--run-config", cfg.flower_run_config_arg(),
            "--federation-config", federation_config(cfg),
        ]  # fmt: skip
        return subprocess.run(cmd, env=flower_env(link.flwr_home), check=False).returncode
