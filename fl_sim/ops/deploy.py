"""Run the apps on Flower's deployment engine: one OS process per role, then ``flwr run``.

``fl-sim deploy`` starts a SuperLink, the ServerApp's SuperExec and one SuperNode per client
(node config ``partition-id=i num-partitions=N``), each in its own process group (and with
``--netns`` in its own network namespace), submits the run with ``flwr run`` and stops every
process it started when the run ends, fails or is interrupted; if ``fl-sim`` itself dies
(even by SIGKILL), its watchdog (``fl_sim.ops.watchdog``) ends them and removes the work dir.

Isolation, and why: the SuperLink runs with ``--isolation process`` and we start the
ServerApp's ``flower-superexec`` ourselves. In flwr 1.41 the SuperLink's default
``subprocess`` isolation launches its SuperExec with ``start_new_session``, outside the
SuperLink's process group, so only a parent-pid watchdog would end it and the ServerApp it
spawned; our own SuperExec keeps the ServerApp in a group we own, and it is the layout of the
containers too (a ``serverapp`` service beside ``superlink``). SuperNodes keep ``subprocess``
isolation: their SuperExec and every ClientApp process stay in the SuperNode's group.

The pieces: each role's command line (``fl_sim.ops.roles``, the single source that
``docker-compose.yml`` repeats), network namespaces (``fl_sim.ops.netns``), and supervising the
submitted run (``fl_sim.ops.supervise``); their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fl_sim.ops import watchdog
from fl_sim.ops.certs import DEFAULT_SANS, write_certs
from fl_sim.ops.console import FLOWER_LOG
from fl_sim.ops.launcher import ManagedProcess, flower_env, free_port, stop_all, wait_healthy
from fl_sim.ops.netns import NetnsNetwork, can_reach
from fl_sim.ops.roles import (
    CONNECTION,
    NODE_RUNTIME_PORT,
    SUPERLINK_PORT,
    FlowerRun,
    serverapp_command,
    submit_command,
    superlink_command,
    supernode_command,
)
from fl_sim.ops.supervise import (
    DeployError,
    SubmitResult,
    health_url,
    signals_deferred,
    submit,
    tls_context,
)
from fl_sim.ops.tempdirs import temp_dir

__all__ = [  # what fl-sim deploy, the CLI and tests import from here
    "CONNECTION",
    "NODE_RUNTIME_PORT",
    "SUPERLINK_PORT",
    "DeployError",
    "DeployOptions",
    "NetnsNetwork",
    "SubmitResult",
    "deploy",
    "serverapp_command",
    "submit",
    "submit_command",
    "superlink_command",
    "supernode_command",
]


@dataclass(frozen=True)
class DeployOptions:
    """What ``fl-sim deploy`` was asked for beyond the run config."""

    netns: bool = False
    tls: bool = False
    workdir: Path | None = None  # kept; default: a temporary dir removed after a clean run
    startup_timeout: float = 60.0
    keep_temp: bool = False  # keep the temporary work dir in any case
    verbose: bool = False  # Flower's log records on the console too


def say(text: str) -> None:
    print(f"fl-sim deploy: {text}", flush=True)


@contextlib.contextmanager
def _workdir(options: DeployOptions) -> Iterator[Path]:
    """The private work dir (logs, FLWR_HOMEs, certs). A temporary one is removed at the end,
    also after Ctrl-C, SIGTERM or (by the watchdog) SIGKILL, but kept after an error (its
    logs explain it) or with ``keep_temp``."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        yield options.workdir.resolve()
        return
    what = "the work dir (logs, pids.json, Flower homes)"
    with temp_dir("fl-sim-deploy-", what, say, options.keep_temp, keep_on_error=True) as path:
        yield path


def deploy(run: FlowerRun, options: DeployOptions) -> int:
    """Bring up the federation, submit ``run`` to it, stop everything; returns the exit code."""
    if options.netns:
        NetnsNetwork.check_available()
    n = run.clients
    hosts = ["link", *[f"node{i}" for i in range(n)]]
    with watchdog.watching(), _workdir(options) as work, contextlib.ExitStack() as stack:
        say(f"work dir (logs, pids) {work}")
        net = stack.enter_context(NetnsNetwork(hosts)) if options.netns else None
        if net is not None:
            say(f"network namespaces {', '.join(net.namespace(h) for h in hosts)} "
                f"on bridge fls{net.tag}br, subnet {net.subnet}.0/24")  # fmt: skip
            link_host, link_port = net.address("link"), SUPERLINK_PORT
            node_ports = [NODE_RUNTIME_PORT] * n
        else:
            link_host, link_port = "127.0.0.1", free_port()
            node_ports = [free_port() for _ in range(n)]
        superlink = f"{link_host}:{link_port}"
        tls = None
        if options.tls:
            sans = (*DEFAULT_SANS, link_host) if link_host not in DEFAULT_SANS else DEFAULT_SANS
            tls = write_certs(work / "certs", sans)
            say(f"TLS: throwaway CA and server certificate in {work / 'certs'}")
        ca = tls.ca if tls else None

        def wrap(host: str, cmd: list[str]) -> list[str]:
            return net.wrap(host, cmd) if net is not None else cmd

        procs: list[ManagedProcess] = []
        stack.callback(lambda: _shutdown(procs, work))

        def start(name: str, host: str, cmd: list[str]) -> ManagedProcess:
            home = work / name
            p = ManagedProcess(name, wrap(host, cmd), flower_env(home), work / f"{name}.log")
            procs.append(p.start())
            where = f" in {net.namespace(host)}" if net is not None else ""
            say(f"started {name} (pid {p.pid}{where}), log {p.log_path}")
            _write_pids(work, procs)
            return p

        bind = "0.0.0.0" if net is not None else "127.0.0.1"
        link = start("superlink", "link", superlink_command(bind, link_port, tls))
        wait_healthy(health_url(superlink, ca), [link], options.startup_timeout, tls_context(ca))
        say(f"SuperLink healthy at {superlink}")
        start("serverapp", "link", serverapp_command(superlink, ca))
        for i in range(n):
            host = f"node{i}"
            if net is not None and not can_reach(
                wrap(host, []), link_host, link_port, flower_env(work / "probe")
            ):
                raise DeployError(
                    f"{net.namespace(host)} cannot reach the SuperLink at {superlink}: bridged "
                    "traffic may be filtered (br_netfilter with an iptables FORWARD policy of "
                    "DROP, as on Docker hosts)"
                )
            start(f"supernode-{i}", host, supernode_command(superlink, i, n, node_ports[i], ca))
        arms = ",".join(run.arms)
        say(f"submitting the run: {n} clients x {run.rounds} rounds, arms {arms}")
        start_t = time.monotonic()
        result = submit(
            run, superlink, ca, work, watch=procs, wait_s=options.startup_timeout,
            verbose=options.verbose, flower_log=flower_log(run),
        )  # fmt: skip
        total = time.monotonic() - start_t
        if result.arm_seconds:
            per_round = sum(result.arm_seconds) / (len(result.arm_seconds) * run.rounds)
            say(f"flwr run took {total:.1f}s; {per_round:.1f}s per FL round on average")
        if not result.ok:
            raise DeployError(
                f"run {result.run_id} {result.status or 'did not start'} (flwr run exit code "
                f"{result.code}) {result.details}; see {work / 'flwr-run.log'} and "
                f"{work / 'serverapp.log'}"
            )
        say(f"run {result.run_id} {result.status}")
        return 0


def _write_pids(work: Path, procs: list[ManagedProcess]) -> None:
    """pids.json: each started process (its pid is also its process group)."""
    (work / "pids.json").write_text(json.dumps({p.name: p.pid for p in procs}, indent=1))


def _shutdown(procs: list[ManagedProcess], work: Path) -> None:
    if not procs:
        return
    with signals_deferred():
        stop_all(list(reversed(procs)), timeout=20)
    say(f"stopped {len(procs)} process groups ({work / 'pids.json'})")


def flower_log(run: FlowerRun) -> Path | None:
    """``flower.log`` in the out dir, where that dir exists on this host (the ServerApp may
    run elsewhere, or fail on a bad out path: its error then says why, not ours)."""
    return run.out / FLOWER_LOG if run.out.is_dir() else None
