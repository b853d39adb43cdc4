"""Run the apps on Flower's deployment engine: one OS process per role, then ``flwr run``.

``fl-sim deploy`` starts a SuperLink, the ServerApp's SuperExec and one SuperNode per client
(node config ``partition-id=i num-partitions=N``), each in its own process group (and with
``--netns`` in its own network namespace), submits the run with ``flwr run`` and stops every
process it started when the run ends, fails or is interrupted.

Isolation, and why: the SuperLink runs with ``--isolation process`` and we start the
ServerApp's ``flower-superexec`` ourselves. In flwr 1.41 the SuperLink's default
``subprocess`` isolation launches its SuperExec with ``start_new_session``, outside the
SuperLink's process group, so only a parent-pid watchdog would end it and the ServerApp it
spawned; our own SuperExec keeps the ServerApp in a group we own, and it is the layout of the
containers too (a ``serverapp`` service beside ``superlink``). SuperNodes keep ``subprocess``
isolation: their SuperExec and every ClientApp process stay in the SuperNode's group.

The command builders below are the single source of each role's command line:
``docker-compose.yml`` repeats them and ``tests/test_compose.py`` checks that it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fl_sim.config import RunConfig
from fl_sim.ops.certs import DEFAULT_SANS, TlsFiles, write_certs
from fl_sim.ops.launcher import (
    ManagedProcess,
    SuperLinkError,
    connection_toml,
    flower_env,
    free_port,
    project_dir,
    stop_all,
    wait_healthy,
)

CONNECTION = "fl-sim-deploy"
SUPERLINK_PORT = 8000  # Flower's default: every SuperLink API is HTTP(S) on this port
NODE_RUNTIME_PORT = 9094  # a SuperNode's Runtime API (ClientAppIo), local to its host


class DeployError(SuperLinkError):
    """The federation could not be brought up (the message names the log to read)."""


# --- command lines of each role (shared with docker-compose.yml) ---------------------------


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


def submit_command(project: Path | str, connection: str, cfg: RunConfig) -> list[str]:
    """``flwr run`` of this project with the run config, streaming the ServerApp's log."""
    return [
        "flwr", "run", str(project), connection, "--stream",
        "--run-config", cfg.flower_run_config_arg(),
    ]  # fmt: skip


# --- hosts: loopback, or one network namespace per process ---------------------------------


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DeployError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass
class NetnsNetwork:
    """A bridge in the root namespace and one network namespace per host, on a private /24.

    Each host gets a veth pair (one end on the bridge, ``eth0`` inside its namespace), an
    address 10.x.y.(2+k) and its own loopback; the root namespace is 10.x.y.1, so the
    ``flwr`` CLI reaches the SuperLink across the bridge like a remote user would.
    """

    hosts: list[str]
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: str = ""
    _created_ns: list[str] = field(default_factory=list)
    _created_veths: list[str] = field(default_factory=list)
    _bridge: str | None = None

    @staticmethod
    def check_available() -> None:
        if not sys.platform.startswith("linux"):
            raise DeployError("--netns needs Linux network namespaces")
        if os.geteuid() != 0:
            raise DeployError("--netns needs root (ip netns add); run as root or drop --netns")
        if shutil.which("ip") is None:
            raise DeployError("--netns needs the ip command (iproute2)")

    def namespace(self, host: str) -> str:
        return f"fl-sim-{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{2 + self.hosts.index(host)}"

    def __enter__(self) -> NetnsNetwork:
        self.check_available()
        if len(self.hosts) > 250:
            raise DeployError(f"--netns supports up to 250 hosts, got {len(self.hosts)}")
        self.subnet = self._free_subnet()
        try:
            bridge = f"fls{self.tag}br"
            _ip("link", "add", bridge, "type", "bridge")
            self._bridge = bridge
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
            for k, host in enumerate(self.hosts):
                ns, outer, inner = self.namespace(host), f"fls{self.tag}h{k}", f"fls{self.tag}n{k}"
                _ip("netns", "add", ns)
                self._created_ns.append(ns)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                self._created_veths.append(outer)
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", outer, "master", bridge, "up")
                _ip("-n", ns, "link", "set", inner, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Delete the namespaces (their veth ends take the peers along) and the bridge."""
        with signals_deferred():
            self._delete()

    def _delete(self) -> None:
        for ns in reversed(self._created_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for veth in self._created_veths:  # gone with its peer's namespace, unless never moved
            subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        if self._bridge is not None:
            subprocess.run(["ip", "link", "del", self._bridge], capture_output=True, check=False)
        self._created_ns.clear()
        self._created_veths.clear()
        self._bridge = None

    def wrap(self, host: str, cmd: list[str]) -> list[str]:
        """Run ``cmd`` inside the host's namespace (``ip netns exec`` execs: same pid)."""
        return ["ip", "netns", "exec", self.namespace(host), *cmd]

    def _free_subnet(self) -> str:
        used = subprocess.run(
            ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
            check=False,
        ).stdout  # fmt: skip
        for _ in range(100):
            subnet = f"10.{secrets.choice(range(64, 250))}.{secrets.choice(range(256))}"
            if f"{subnet}." not in used:
                return subnet
        raise DeployError("found no free 10.x.y.0/24 subnet for --netns")


# --- the deployment --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    """What ``fl-sim deploy`` was asked for beyond the run config."""

    netns: bool = False
    tls: bool = False
    workdir: Path | None = None  # kept; default: a temporary dir removed after a clean run
    startup_timeout: float = 60.0


def say(text: str) -> None:
    print(f"fl-sim deploy: {text}", flush=True)


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
) -> SubmitResult:
    """Run ``flwr run``, echo and log its output, and abort if a watched process dies.

    Notes the run id and the seconds each arm's federation took, as the ServerApp measured
    them (its "=== arm ... done in" lines).
    """
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    result = SubmitResult(code=-1)
    try:
        with open(log_path, "ab") as log:
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
                sys.stdout.write(text)
                sys.stdout.flush()
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
    cfg: RunConfig,
    superlink: str,
    ca: Path | None,
    workdir: Path,
    watch: list[ManagedProcess] | None = None,
    wait_s: float = 60.0,
) -> SubmitResult:
    """Wait for the SuperLink's health endpoint, ``flwr run`` the project on it, and read
    back the run's final status."""
    home = workdir / "flwr-cli"
    write_connection(home, superlink, ca)
    wait_healthy(health_url(superlink, ca), watch or [], wait_s, tls_context(ca))
    cmd = submit_command(project_dir(), CONNECTION, cfg)
    env = flower_env(home)
    result = stream_submit(cmd, env, workdir / "flwr-run.log", watch or [])
    if result.run_id is not None:
        result.status, result.details = run_status(env, result.run_id)
    return result


@contextlib.contextmanager
def _workdir(options: DeployOptions) -> Iterator[Path]:
    """The private work dir (logs, FLWR_HOMEs, certs); a temporary one goes if all went well."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        yield options.workdir.resolve()
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="fl-sim-deploy-"))
    yield path  # an exception propagates from here and keeps the logs for reading
    shutil.rmtree(path, ignore_errors=True)


def _probe(cmd_prefix: list[str], host: str, port: int, env: dict[str, str]) -> bool:
    """Can a TCP connection reach host:port from inside a namespace?"""
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    proc = subprocess.run(
        [*cmd_prefix, sys.executable, "-c", code], env=env, capture_output=True, check=False
    )
    return proc.returncode == 0


def deploy(cfg: RunConfig, options: DeployOptions) -> int:
    """Bring up the federation, run ``cfg`` on it, stop everything; returns the exit code."""
    if options.netns:
        NetnsNetwork.check_available()
    n = cfg.clients
    hosts = ["link", *[f"node{i}" for i in range(n)]]
    with _workdir(options) as work, contextlib.ExitStack() as stack:
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
            if net is not None and not _probe(
                wrap(host, []), link_host, link_port, flower_env(work / "probe")
            ):
                raise DeployError(
                    f"{net.namespace(host)} cannot reach the SuperLink at {superlink}: bridged "
                    "traffic may be filtered (br_netfilter with an iptables FORWARD policy of "
                    "DROP, as on Docker hosts)"
                )
            start(f"supernode-{i}", host, supernode_command(superlink, i, n, node_ports[i], ca))
        arms = ",".join(cfg.federated_arms)
        say(f"submitting the run: {n} clients x {cfg.rounds} rounds, arms {arms}")
        start_t = time.monotonic()
        result = submit(cfg, superlink, ca, work, watch=procs, wait_s=options.startup_timeout)
        total = time.monotonic() - start_t
        if result.arm_seconds:
            per_round = sum(result.arm_seconds) / (len(result.arm_seconds) * cfg.rounds)
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


def _shutdown(procs: list[ManagedProcess], work: Path) -> None:
    if not procs:
        return
    with signals_deferred():
        stop_all(list(reversed(procs)), timeout=20)
    say(f"stopped {len(procs)} process groups ({work / 'pids.json'})")
