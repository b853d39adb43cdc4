"""Shared fixtures: one judge cache per test session, small configs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/inproc_grid.py

import torch  # noqa: E402

import fl_sim.data.loaders.nmnist_emulated as nm  # noqa: E402
from fl_sim.data.registry import DataSplit, clear_dataset_cache  # noqa: E402
from fl_sim.federation.run_config import RunConfig  # noqa: E402

# One torch thread, as every fl-sim process uses (threads=1): tests that recompute a client's
# result in the main thread then sum in the same order as the client did.
torch.set_num_threads(1)


@pytest.fixture
def float64() -> Iterator[None]:
    """Torch's default dtype float64 for one test (exact identities, stable trajectories)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def judge_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("judge-cache"))


@dataclass(frozen=True)
class CliRun:
    """A finished ``fl-sim run`` subprocess: its out dir, exit code and console output."""

    out: Path
    returncode: int
    log: str


@pytest.fixture(scope="session")
def flower_run(tmp_path_factory: pytest.TempPathFactory, judge_cache: str) -> CliRun:
    """`fl-sim run` for real (private SuperLink, Ray simulation), 2 clients x 2 rounds, both
    arms, once per session: the tests that read its out dir share it (read only). Its
    captures are attacked as Ray tasks on the simulation's own Ray (``attack_runner=ray``:
    Flower's client actors hold every CPU of it), the other runs of the suite attack in the
    ServerApp's process."""
    out = tmp_path_factory.mktemp("flower-run") / "out"
    cmd = [
        sys.executable, "-m", "fl_sim.cli", "run", "--out", str(out),
        "--set", "clients=2", "--set", "rounds=2", "--set", "iterations=10",
        "--set", "rates_iterations=50",
        "--set", f"cache_dir={judge_cache}", "--set", "attack_runner=ray",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    return CliRun(out, proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture
def small_cfg(tmp_path: Path, judge_cache: str) -> RunConfig:
    """2 clients, 2 rounds, a short attack budget: the federation logic at test speed."""
    return RunConfig.of(
        clients=2, rounds=2, iterations=20, rates_iterations=20, out=str(tmp_path / "out"),
        cache_dir=judge_cache,
    )  # fmt: skip


@pytest.fixture
def tiny_digits(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, DataSplit]:
    """nmnist-emulated over 12 real mnist5k digits per split (emulating all 5000 takes ~2.5 min)."""
    full = nm._mnist5k_splits()
    tiny = {
        split: DataSplit("mnist5k", d.inputs[:12], d.labels[:12], d.num_classes)
        for split, d in full.items()
    }
    monkeypatch.setattr(nm, "_mnist5k_splits", lambda: tiny)
    monkeypatch.setenv("FL_SIM_CACHE", str(tmp_path))
    clear_dataset_cache()
    yield tiny
    clear_dataset_cache()
