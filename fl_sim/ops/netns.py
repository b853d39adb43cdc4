"""Hosts of a deployment in Linux network namespaces: a bridge, one namespace per process."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from fl_sim.ops.supervise import DeployError, signals_deferred


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


def can_reach(cmd_prefix: list[str], host: str, port: int, env: dict[str, str]) -> bool:
    """Can a TCP connection reach host:port from inside a namespace?"""
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    proc = subprocess.run(
        [*cmd_prefix, sys.executable, "-c", code], env=env, capture_output=True, check=False
    )
    return proc.returncode == 0
