"""Command line of each role of a deployment: SuperLink, the ServerApp's SuperExec, SuperNode,
and the ``flwr run`` submission.

These builders are the single source of each role's command: ``fl-sim deploy`` runs them as
processes, ``docker-compose.yml`` repeats them and ``tests/test_compose.py`` checks that it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fl_sim.ops.certs import TlsFiles
from fl_sim.ops.runtime_config import RuntimeConfig

CONNECTION = "fl-sim-deploy"
SUPERLINK_PORT = 8000  # Flower's default: every SuperLink API is HTTP(S) on this port
NODE_RUNTIME_PORT = 9094  # a SuperNode's Runtime API (ClientAppIo), local to its host

FlowerValue = bool | int | float | str


@dataclass(frozen=True)
class FlowerRun:
    """What starting a run on Flower needs of it: its run config (flat keys, as Flower takes
    them), the federation's size and the runtime settings."""

    run_config: Mapping[str, FlowerValue]
    clients: int
    rounds: int
    arms: tuple[str, ...]
    runtime: RuntimeConfig
    out: Path

    @property
    def run_config_arg(self) -> str:
        """The ``--run-config`` string for ``flwr run``."""
        return run_config_arg(self.run_config)


def run_config_arg(values: Mapping[str, FlowerValue]) -> str:
    """``--run-config`` of ``flwr run``: TOML ``key=value`` pairs separated by spaces."""
    parts = []
    for k, v in values.items():
        if isinstance(v, bool):
            parts.append(f"{k}={str(v).lower()}")
        elif isinstance(v, str):
            parts.append(f'{k}="{v}"')
        else:
            parts.append(f"{k}={v!r}")
    return " ".join(parts)


def superlink_command(host: str, port: int, tls: TlsFiles | None) -> list[str]:
    """SuperLink (deployment engine) whose ServerApp runs in a SuperExec we start."""
    cmd = [
        "flower-superlink", "--isolation", "process",
        "--disable-runtime-dependency-installation",
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    if tls is None:
        return [*cmd, "--insecure"]
    return [
        *cmd,
        "--ssl-ca-certfile", str(tls.ca), "--ssl-certfile", str(tls.cert),
        "--ssl-keyfile", str(tls.key),
    ]  # fmt: skip


def _client_tls(ca: Path | None) -> list[str]:
    return ["--insecure"] if ca is None else ["--root-certificates", str(ca)]


def serverapp_command(superlink: str, ca: Path | None) -> list[str]:
    """SuperExec that runs the ServerApp (and the eavesdropper) of each submitted run."""
    return ["flower-superexec", "--runtime-api-address", superlink, *_client_tls(ca)]


def supernode_command(
    superlink: str, partition_id: int, num_partitions: int, runtime_port: int, ca: Path | None
) -> list[str]:
    """SuperNode holding one data partition; it runs its ClientApps in subprocesses."""
    return [
        "flower-supernode", "--superlink", superlink,
        "--node-config", f"partition-id={partition_id} num-partitions={num_partitions}",
        "--host", "127.0.0.1", "--port", str(runtime_port),
        *_client_tls(ca),
    ]  # fmt: skip


def submit_command(project: Path | str, connection: str, run: FlowerRun) -> list[str]:
    """``flwr run`` of this project with the run config, streaming the ServerApp's log."""
    return [
        "flwr", "run", str(project), connection, "--stream",
        "--run-config", run.run_config_arg,
    ]  # fmt: skip
