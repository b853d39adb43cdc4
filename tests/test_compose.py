"""docker-compose.yml: valid for docker-compose, and the same role commands as `fl-sim deploy`.

``docker-compose config`` (Debian's docker-compose package) validates the files without a
Docker engine. Without docker-compose those checks skip, except in CI (``CI=true``), where
they fail: .ci/run installs it. scripts/compose-e2e.sh runs the federation for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fl_sim.cli import build_parser
from fl_sim.ops.certs import TlsFiles
from fl_sim.ops.compose import compose_file, tls_override
from fl_sim.ops.deploy import serverapp_command, superlink_command, supernode_command

ROOT = Path(__file__).resolve().parent.parent
BASE, TLS = ROOT / "docker-compose.yml", ROOT / "docker-compose.tls.yml"
SUPERLINK = "superlink:8000"
CERTS = TlsFiles.in_dir(Path("/certs"))


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose is missing in CI (.ci/run installs it with apt-get)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return found


def compose_config(*files: Path) -> dict[str, Any]:
    """The merged configuration as docker-compose resolves it (validating it on the way)."""
    args = [docker_compose()]
    for f in files:
        args += ["-f", str(f)]
    quiet = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=ROOT)
    assert full.returncode == 0, full.stderr
    return yaml.safe_load(full.stdout)


def supernodes(services: dict[str, Any]) -> list[str]:
    return sorted(name for name in services if name.startswith("supernode-"))


def check_commands(services: dict[str, Any], tls: bool, clients: int = 4) -> None:
    """Each service runs what fl_sim/ops/deploy.py builds for its role."""
    ca = CERTS.ca if tls else None
    nodes = supernodes(services)
    assert len(nodes) == clients
    assert services["superlink"]["command"] == superlink_command(
        "0.0.0.0", 8000, CERTS if tls else None
    )
    assert services["serverapp"]["command"] == serverapp_command(SUPERLINK, ca)
    for name in nodes:
        partition = int(name.removeprefix("supernode-")) - 1
        assert services[name]["command"] == supernode_command(
            SUPERLINK, partition, len(nodes), 9094, ca
        ), name
    submit = services["submit"]["command"]
    assert submit[0] == "fl-sim"
    args = build_parser().parse_args(submit[1:])
    assert args.command == "submit" and args.superlink == SUPERLINK
    assert args.clients == len(nodes)  # the ServerApp waits for this many SuperNodes
    assert args.out.startswith("/results/")
    assert args.root_certificates == (CERTS.ca if tls else None)


def test_checked_in_files_are_the_generators_output_for_4_clients() -> None:
    assert BASE.read_text() == compose_file(4)
    assert TLS.read_text() == tls_override(4)


def test_generated_file_for_2_clients_validates(tmp_path: Path) -> None:
    base, tls = tmp_path / "docker-compose.yml", tmp_path / "docker-compose.tls.yml"
    base.write_text(compose_file(2, "/results/two", ["rounds=2", "attacks=idlg"]))
    tls.write_text(tls_override(2, "/results/two", ["rounds=2", "attacks=idlg"]))
    services = compose_config(base)["services"]
    check_commands(services, tls=False, clients=2)
    assert services["submit"]["command"][-4:] == ["--set", "rounds=2", "--set", "attacks=idlg"]
    check_commands(compose_config(base, tls)["services"], tls=True, clients=2)


def test_compose_file_refuses_bad_sizes_and_paths() -> None:
    with pytest.raises(ValueError, match="--clients 0"):
        compose_file(0)
    with pytest.raises(ValueError, match="under /results/"):
        tls_override(2, "/tmp/x")


def test_compose_file_matches_the_deploy_commands() -> None:
    services = yaml.safe_load(BASE.read_text())["services"]
    check_commands(services, tls=False)
    assert {"superlink", "serverapp", "submit"} <= set(services)
    assert any(v.endswith(":/results") for v in services["serverapp"]["volumes"])
    assert all(s["image"] == "fl-sim:local" for s in services.values())


def test_tls_override_matches_the_deploy_commands() -> None:
    base = yaml.safe_load(BASE.read_text())["services"]
    override = yaml.safe_load(TLS.read_text())["services"]
    merged = {name: {**base[name], **override.get(name, {})} for name in base}
    check_commands(merged, tls=True)
    for name in base:
        assert "./certs:/certs:ro" in override[name]["volumes"], name


def test_docker_compose_validates_the_files() -> None:
    services = compose_config(BASE)["services"]
    check_commands(services, tls=False)
    assert set(services) == {"superlink", "serverapp", "submit", *supernodes(services)}


def test_docker_compose_validates_the_tls_override() -> None:
    services = compose_config(BASE, TLS)["services"]
    check_commands(services, tls=True)
    volumes = services["serverapp"]["volumes"]
    assert any(v.endswith(":/certs:ro") for v in volumes)
    assert any(v.endswith(":/results:rw") or v.endswith(":/results") for v in volumes)
