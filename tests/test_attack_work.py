"""Attack work on Ray computes what the in-process path computes; the device setting."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import models.device
from attacks import AttackConfig, Capture, build_attack
from fl_sim.evaluation.attack_work import RUNNERS, Execution, ray_slots
from fl_sim.evaluation.leakage import Target, reconstruct_all
from fl_sim.ops.ray_tasks import RaySettings, ensure_ray, ray_pool
from fl_sim.ops.runtime_config import ATTACK_RUNNERS
from models.device import resolve_device
from tests.tests_helpers import ann_capture

RAY = Execution(runner="ray")


@pytest.fixture(scope="module")
def local_ray() -> None:
    """A local Ray of 2 CPUs for this module (later users in this process reuse it)."""
    ensure_ray(RaySettings(), local_cpus=2)


def float64_targets(n: int) -> list[Target]:
    torch.set_default_dtype(torch.float64)
    try:
        captures = [dataclasses.replace(ann_capture(i), client=i) for i in range(n)]
    finally:
        torch.set_default_dtype(torch.float32)
    return [Target("ann", c, None) for c in captures]


def same(a: object, b: object) -> bool:
    assert not isinstance(a, Exception) and not isinstance(b, Exception), (a, b)
    return (
        torch.equal(a.images, b.images)  # type: ignore[attr-defined]
        and torch.equal(a.labels, b.labels)  # type: ignore[attr-defined]
        and a.grad_loss == b.grad_loss  # type: ignore[attr-defined]
        and (a.status, a.iterations) == (b.status, b.iterations)  # type: ignore[attr-defined]
    )


def test_runner_names_are_the_config_choices() -> None:
    assert tuple(RUNNERS) == ATTACK_RUNNERS


@pytest.mark.slow
def test_ray_tasks_equal_the_in_process_path_in_float64(local_ray: None) -> None:
    """Same seeds, same code in a Ray worker (run with the submitter's float64 default):
    bit-identical, one capture at a time and through the batched engine, whose batches Ray
    cuts into one chunk per slot (compared with the same chunks in process: DLG's second
    L-BFGS step on digit 1 parts by 3% between batches of 2 and 3, summation order alone).
    Results come back on the CPU, in target order."""
    targets = float64_targets(3)
    attack = build_attack("dlg", AttackConfig(iterations=2))
    size = -(-len(targets) // ray_slots(RaySettings()))
    torch.set_default_dtype(torch.float64)
    try:
        here = reconstruct_all(attack, targets, batched=False, log=print)
        there = reconstruct_all(attack, targets, batched=False, log=print, execution=RAY)
        chunks = [targets[k : k + size] for k in range(0, len(targets), size)]
        batched_here = [r for c in chunks for r in reconstruct_all(attack, c, True, print)]
        logged: list[str] = []
        batched_there = reconstruct_all(attack, targets, True, logged.append, execution=RAY)
    finally:
        torch.set_default_dtype(torch.float32)
    assert size < len(targets)  # Ray did cut the batch
    assert all(same(a, b) for a, b in zip(here, there, strict=True))
    assert all(same(a, b) for a, b in zip(batched_here, batched_there, strict=True))
    assert here[0].images.dtype == torch.float64  # type: ignore[union-attr]
    assert {r.images.device.type for r in [*there, *batched_there]} == {"cpu"}  # type: ignore[union-attr]
    assert not logged, logged  # the engine took every chunk


@pytest.mark.slow
def test_a_broken_capture_costs_only_itself_on_ray(local_ray: None) -> None:
    targets = float64_targets(2)
    broken: Capture = targets[1].capture
    update = {k: v for k, v in broken.update.items() if not k.endswith("bias")}
    targets[1] = Target("ann", dataclasses.replace(broken, update=update), None)
    attack = build_attack("idlg", AttackConfig(iterations=1))
    done: list[int] = []
    results = reconstruct_all(attack, targets, False, print, done.append, execution=RAY)
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], Exception) and "lacks parameters" in str(results[1])
    assert sum(done) == 2


@pytest.mark.slow
def test_ray_pool_futures_cancel_on_leaving_by_an_exception(local_ray: None) -> None:
    import ray

    with pytest.raises(KeyboardInterrupt), ray_pool(RaySettings(), 2) as pool:
        futures = [pool.submit(os.getpid) for _ in range(2)]
        assert all(f.result(timeout=120) != os.getpid() for f in futures)  # other processes
        slow = pool.submit(__import__("time").sleep, 600)
        raise KeyboardInterrupt
    with pytest.raises(Exception):  # noqa: B017 - Ray's cancellation error type varies
        slow.result(timeout=60)
    assert ray.is_initialized()  # the local Ray stays for later work of this process


def test_device_specs_resolve_or_say_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    resolve_device.cache_clear()
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu' is not one of auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' is not available, this machine has no CUDA"):
        resolve_device("cuda")
    for _ in range(3):
        assert resolve_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err.count("device auto: no CUDA device") == 1  # said once
    resolve_device.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2' is not available.*2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    resolve_device.cache_clear()
    with pytest.raises(ValueError, match=models.device.DEVICE_CHOICES):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_on_a_machine_without_one_is_one_line_and_exit_2(tmp_path: object) -> None:
    cmd = [sys.executable, "-m", "fl_sim.cli", "run", "--set", "device=cuda", "--out", "x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "fl-sim: error: device: 'cuda' is not available, this machine has no CUDA device; "
        "use cpu or auto"
    ]


def test_capture_and_reconstruction_move_between_devices() -> None:
    capture = ann_capture(0)
    assert capture.to("cpu") is capture and capture.device == torch.device("cpu")
    meta = capture.to("meta")  # a device without data: every array moves, nothing else
    assert meta.device.type == "meta" and meta.public == capture.public
    assert {v.device.type for v in meta.global_state.values()} == {"meta"}
    rec = build_attack("idlg", AttackConfig(iterations=1)).reconstruct(capture)
    assert rec.cpu().images is rec.images  # already there


def test_a_unit_that_fails_as_a_whole_fails_its_captures_not_the_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device that has gone away (cuda asked for, none there) costs the captures, not the
    caller: every one of them gets the error in its place."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resolve_device.cache_clear()
    targets = [Target("ann", dataclasses.replace(ann_capture(0), client=i), None) for i in (0, 1)]
    attack = build_attack("idlg", AttackConfig(iterations=1))
    try:
        for batched in (False, True):
            results = reconstruct_all(attack, targets, batched, execution=Execution("cuda"))
            assert [type(r) for r in results] == [ValueError, ValueError]
            assert "'cuda' is not available" in str(results[0])
    finally:
        resolve_device.cache_clear()
