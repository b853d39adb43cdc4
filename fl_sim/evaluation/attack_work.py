"""Where and on what a round's attack work runs: the device (``device``) and the runner
(``attack_runner``: in this process, or as Ray tasks on a local Ray or a cluster).

The work is cut into units: the captures of one public info attacked together by the
batched engine (cut into as many chunks as Ray can run at once), or one capture each. A unit
computes the same on either runner: Ray tasks run with the submitter's default dtype and the
same code, so only thread counts can part float32 results. A failed capture, unit or task
becomes an exception in that capture's place, never a lost round.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from attacks.batched import reconstruct_batch
from attacks.types import Attack, Capture, Reconstruction
from fl_sim.ops.ray_tasks import RayPool, RaySettings, ensure_ray
from models.device import resolve_device

if TYPE_CHECKING:
    from fl_sim.ops.runtime_config import RuntimeConfig

Result = Reconstruction | Exception
Log = Callable[[str], None]


@dataclass(frozen=True)
class Execution:
    """How attack work runs: ``device`` spec, runner name (:data:`RUNNERS`), Ray settings."""

    device: str = "cpu"
    runner: str = "local"
    ray: RaySettings = field(default_factory=RaySettings)

    @classmethod
    def of(cls, runtime: RuntimeConfig) -> Execution:
        """The execution a run's runtime section asks for."""
        return cls(runtime.device, runtime.attack_runner, RaySettings.of(runtime))


@dataclass(frozen=True)
class Unit:
    """Captures attacked in one call: together by the batched engine if ``batched``."""

    attack: Attack
    captures: tuple[Capture, ...]
    batched: bool
    where: str  # e.g. "[ann]", for the fallback line


def attack_unit(unit: Unit, device: str) -> tuple[list[Result], list[str]]:
    """Reconstructions of a unit's captures on ``device`` (returned on the CPU), an exception
    in place of a failed one, and the lines to log. A batch the engine cannot take is
    attacked one capture at a time, with one line saying why."""
    where = resolve_device(device)
    captures = [c.to(where) for c in unit.captures]
    lines: list[str] = []
    if unit.batched and len(captures) > 1:
        try:
            recs = list(reconstruct_batch(unit.attack, captures))  # type: ignore[arg-type]
            if len(recs) != len(captures):
                raise RuntimeError(f"{len(recs)} results for {len(captures)} captures")
            return [r.cpu() for r in recs], lines
        except Exception as err:  # e.g. an attack or option the engine does not mirror
            why = "cannot batch" if isinstance(err, NotImplementedError) else "failed"
            lines.append(
                f"{unit.where} {unit.attack.name}: batched engine {why} "
                f"({type(err).__name__}: {err}); attacking one capture at a time"
            )
    results: list[Result] = []
    for capture in captures:
        try:
            results.append(unit.attack.reconstruct(capture).cpu())
        except Exception as err:  # one failed capture must not cost the others
            results.append(err)
    return results, lines


def _portable(results: list[Result]) -> list[Result]:
    """Exceptions that survive pickling (a Ray task's return value) as they are, others as a
    RuntimeError carrying their type and message."""
    out: list[Result] = []
    for r in results:
        if isinstance(r, Exception):
            try:
                pickle.loads(pickle.dumps(r))
            except Exception:
                r = RuntimeError(f"{type(r).__name__}: {r}")
        out.append(r)
    return out


def _ray_unit(unit: Unit, device: str) -> tuple[list[Result], list[str]]:
    results, lines = attack_unit(unit, device)
    return _portable(results), lines


def run_local(
    units: Sequence[Unit], execution: Execution, log: Log, done: Callable[[Unit], None]
) -> list[list[Result]]:
    """Every unit in this process, in order; a unit that fails as a whole (e.g. its device
    is gone) fails each of its captures."""
    out = []
    for unit in units:
        try:
            results, lines = attack_unit(unit, execution.device)
        except Exception as err:
            results, lines = [err] * len(unit.captures), []
        for line in lines:
            log(line)
        out.append(results)
        done(unit)
    return out


def ray_slots(settings: RaySettings) -> int:
    """How many attack tasks the Ray cluster can run at once (its CPUs or GPUs over what one
    task reserves)."""
    import ray

    total = ray.cluster_resources()
    by_cpu = int(total.get("CPU", 1) // max(1, settings.cpus))
    if settings.gpus > 0:
        return max(1, min(by_cpu, int(total.get("GPU", 0) // settings.gpus)))
    return max(1, by_cpu)


def run_ray(
    units: Sequence[Unit], execution: Execution, log: Log, done: Callable[[Unit], None]
) -> list[list[Result]]:
    """Every unit as a Ray task; batched units are cut into chunks so that all of Ray's
    slots work. A task that fails as a whole (a worker lost) fails each of its captures."""
    reserve = ensure_ray(execution.ray)
    slots = ray_slots(execution.ray)
    pieces: list[tuple[int, Unit]] = []
    for i, unit in enumerate(units):
        if unit.batched and len(unit.captures) > 1 and slots > 1:
            size = max(1, math.ceil(len(unit.captures) / slots))
            for k in range(0, len(unit.captures), size):
                chunk = unit.captures[k : k + size]
                pieces.append((i, Unit(unit.attack, chunk, unit.batched, unit.where)))
        else:
            pieces.append((i, unit))
    pool = RayPool(execution.ray, reserve)
    futures = {
        pool.submit(_ray_unit, piece, execution.device): n for n, (_, piece) in enumerate(pieces)
    }
    answers: list[list[Result]] = [[] for _ in pieces]
    try:
        for future in as_completed(futures):
            n = futures[future]
            piece = pieces[n][1]
            try:
                results, lines = future.result()
            except Exception as err:  # the task itself failed: every capture of it did
                results, lines = [err] * len(piece.captures), []
            for line in lines:
                log(line)
            answers[n] = results
            done(piece)
    except BaseException:
        pool.cancel()
        raise
    out: list[list[Result]] = [[] for _ in units]
    for (i, _), results in zip(pieces, answers, strict=True):
        out[i].extend(results)
    return out


RUNNERS = {"local": run_local, "ray": run_ray}
