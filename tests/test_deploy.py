"""`fl-sim deploy` for real: Flower's deployment engine, one OS process per role.

The end-to-end tests start a SuperLink, the ServerApp's SuperExec and 2 SuperNodes, run the
eavesdropping federation through ``flwr run`` and then check that every process is gone.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from fl_sim.federation.run_config import RunConfig
from fl_sim.ops.certs import write_certs
from fl_sim.ops.deploy import (
    DeployError,
    DeployOptions,
    NetnsNetwork,
    deploy,
    serverapp_command,
    submit_command,
    superlink_command,
    supernode_command,
)
from fl_sim.ops.launcher import ManagedProcess, connection_toml, group_alive, stop_all
from fl_sim.results.report import read_rows

SMALL = [
    "--set", "arms=ann", "--set", "attacks=idlg", "--set", "iterations=5",
    "--set", "judge_epochs=1", "--set", "grids=false",
]  # fmt: skip


def deploy_cmd(out: Path, work: Path, cache: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "fl_sim.cli", "deploy", "--clients", "2", "--out", str(out),
        "--workdir", str(work), *SMALL, "--set", f"cache_dir={cache}", *extra,
    ]  # fmt: skip


def run_deploy(cmd: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run ``fl-sim deploy``; on a hang, SIGTERM it so that it still stops what it started."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"fl-sim deploy hung:\n{out[-4000:]}")
    return proc.returncode, out


def processes_left(work: Path) -> list[str]:
    """Processes in a group fl-sim deploy started, or with a Flower home in its work dir."""
    groups = set(json.loads((work / "pids.json").read_text()).values())
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgid = fields[0], int(fields[2])
        if state == "Z":
            continue
        if pgid in groups or f"FLWR_HOME={work}".encode() in environ:
            left.append(f"{entry.name}: {stat[:120]}")
    return left


def assert_leakage(out: Path, rounds: int) -> None:
    rows = read_rows(out / "leakage.csv")
    assert sorted((r["round"], r["client"]) for r in rows) == [
        (r, c) for r in range(1, rounds + 1) for c in (0, 1)
    ]
    for row in rows:
        assert row["arm"] == "ann" and row["attack"] == "idlg" and row["status"] == "ok"
        for key in ("mse", "psnr", "ssim", "grad_loss"):
            assert math.isfinite(float(row[key])), (key, row)  # type: ignore[arg-type]
    assert (out / "run.json").exists() and (out / "summary.txt").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_deploy_runs_the_apps_and_leaves_no_process(tmp_path: Path, judge_cache: str) -> None:
    """One deployment, in network namespaces with TLS where this machine allows them (root
    and ``ip``), else plain processes on loopback; nothing of it is left afterwards."""
    out, work = tmp_path / "out", tmp_path / "work"
    isolated = netns_unavailable() is None
    extra = ("--netns", "--tls") if isolated else ()
    code, log = run_deploy(deploy_cmd(out, work, judge_cache, "--rounds", "2", *extra))
    assert code == 0, log[-4000:]
    for line in ("SuperLink healthy at ", "started supernode-1", "[ann r2 c1] idlg:"):
        assert line in log, f"missing progress line {line!r}"
    assert re.search(r"[0-9.]+s per FL round on average", log)
    assert_leakage(out, rounds=2)
    assert "INFO :" not in log and "\x1b" not in log  # Flower's records: in flower.log
    assert "INFO :" in (out / "flower.log").read_text()
    pids = json.loads((work / "pids.json").read_text())
    assert sorted(pids) == ["serverapp", "superlink", "supernode-0", "supernode-1"]
    assert processes_left(work) == []
    for name in pids:
        assert (work / f"{name}.log").stat().st_size > 0
    if not isolated:
        assert "SuperLink healthy at 127.0.0.1:" in log
        return
    tag = re.search(r"network namespaces fl-sim-([0-9a-f]+)-link", log)
    assert tag, log[-3000:]
    link = re.search(r"SuperLink healthy at (10\.\d+\.\d+\.\d+):8000", log)
    assert link, log[-3000:]
    superlink_log = (work / "superlink.log").read_text()
    assert "Uvicorn running on https://" in superlink_log  # TLS on
    # each SuperNode registered from its own host (namespace address), not the SuperLink's
    nodes = set(re.findall(r"(10\.[\d.]+):\d+ - \"POST /v1/fleet/register-node", superlink_log))
    assert len(nodes) == 2 and link.group(1) not in nodes, nodes
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert f"fl-sim-{tag.group(1)}" not in namespaces
    assert f"fls{tag.group(1)}" not in links


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_sigterm_stops_every_process(tmp_path: Path, judge_cache: str) -> None:
    work = tmp_path / "work"
    cmd = deploy_cmd(tmp_path / "out", work, judge_cache, "--rounds", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "submitting the run" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=60)
    log = "".join(seen) + rest
    assert proc.returncode == 143, log[-3000:]
    assert "stopped 4 process groups" in log
    assert processes_left(work) == []


def netns_unavailable() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs Linux and root"
    if shutil.which("ip") is None:
        return "needs the ip command"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "ip netns is not usable here"
    return None


# --- fast checks of the pieces -------------------------------------------------------------


def test_role_commands() -> None:
    ca = Path("/certs/ca.crt")
    assert superlink_command("0.0.0.0", 8000, None)[-1] == "--insecure"
    assert "--isolation" in superlink_command("0.0.0.0", 8000, None)
    assert serverapp_command("superlink:8000", ca)[-2:] == ["--root-certificates", str(ca)]
    node = supernode_command("superlink:8000", 3, 4, 9094, None)
    assert node[node.index("--node-config") + 1] == "partition-id=3 num-partitions=4"
    submit = submit_command("/app", "conn", RunConfig.of(clients=4, out="/results/x").flower_run())
    assert submit[:5] == ["flwr", "run", "/app", "conn", "--stream"]
    assert "clients=4" in submit[-1] and 'out="/results/x"' in submit[-1]
    assert 'root-certificates = "/c/ca.crt"' in connection_toml("x", "h:1", Path("/c/ca.crt"))
    assert "insecure = true" in connection_toml("x", "h:1", None)


def test_netns_refuses_without_root_or_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DeployError, match="needs root"):
        NetnsNetwork.check_available()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeployError, match="ip command"):
        NetnsNetwork.check_available()


def test_certs_chain_and_names(tmp_path: Path) -> None:
    files = write_certs(tmp_path, ("superlink", "10.1.2.3"))
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["superlink"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert files.key.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX process groups")
def test_stop_all_ends_the_whole_group(tmp_path: Path) -> None:
    # a leader that ignores SIGTERM, with a child: both must go
    script = "trap '' TERM; sleep 300 & sleep 300"
    p = ManagedProcess("sh", ["sh", "-c", script], dict(os.environ), tmp_path / "sh.log").start()
    time.sleep(0.3)
    assert group_alive(p.pid)
    stop_all([p], timeout=1)
    assert not group_alive(p.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_a_failed_serverapp_fails_the_deploy(tmp_path: Path, judge_cache: str) -> None:
    # `flwr run --stream` exits 0 when the ServerApp raises: deploy reads the run's status.
    (tmp_path / "file").touch()
    cfg = RunConfig.of(
        clients=1, rounds=1, arms=("ann",), attacks=("idlg",), iterations=5, judge_epochs=1,
        grids=False, cache_dir=judge_cache, out=str(tmp_path / "file" / "out"),
    )  # fmt: skip
    work = tmp_path / "work"
    with pytest.raises(DeployError, match="finished:failed.*Not a directory.*serverapp.log"):
        deploy(cfg.flower_run(), DeployOptions(workdir=work))
    assert processes_left(work) == []


@pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))
def test_netns_cleanup_after_a_failed_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    import fl_sim.ops.netns as netns_mod

    real_ip, calls = netns_mod._ip, []

    def failing_ip(*args: str) -> None:
        calls.append(args)
        if len(calls) == 15:  # second host: namespace and veth made, not yet on the bridge
            raise DeployError("injected")
        real_ip(*args)

    monkeypatch.setattr(netns_mod, "_ip", failing_ip)
    net = NetnsNetwork(["link", "node0", "node1"])
    with pytest.raises(DeployError, match="injected"):
        net.__enter__()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert f"fl-sim-{net.tag}-" not in namespaces and f"fls{net.tag}" not in links
