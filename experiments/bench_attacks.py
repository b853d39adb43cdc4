"""Reconstructions per second: the per-capture loop against the batched engine.

For the ANN LeNet and the SNN LeNet at T=4 and T=8, on real mnist5k digits (1x28x28, 10
classes, batch size 1, each digit on its own freshly initialised victim), times
``attack.reconstruct(c)`` in a loop and ``attacks.batched.reconstruct_batch`` at P = 1, 16,
64, 256, in the same process and with the same torch thread count, for a fixed small
number of optimiser steps per reconstruction (DLG/iDLG: outer L-BFGS steps, each up to 20
inner iterations; ig: signed-Adam steps). The loop's
cost per capture does not depend on P, so it is timed once per model on min(P_max, 16)
captures. Then it checks the batched results against the looped ones on those captures:

* float64 (both paths, one step): status, iterations and labels equal, images and
  gradient loss within 1e-6 -- the engine computes what the loop computes -- except where the
  loop is itself that sensitive to a 1e-12 change of its start (an SNN step that lands a
  membrane potential on the threshold flips a spike and the loss jumps);
* float32 (the timed runs): agreement is reported, not asserted. DLG's L-BFGS (lr 1, no line
  search) amplifies float32 rounding differences (other summation orders) until some
  trajectories part within a few steps; the loop itself does that across thread counts.

    python -m experiments.bench_attacks [--steps 2] [--threads 1] [--attack dlg] [--device cuda]

The last lines are one per model: ``<model> P=<P_max> speedup=<batched/loop>x``. Both paths
run on ``--device`` (captures moved there; dummies drawn on the CPU as always).

``--cell`` times one Table IV cell end to end instead (``experiments/bench_cell.py``):

    python -m experiments.bench_attacks --cell --attack idlg --arm ann [--samples 1000] \
        [--batch 256] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from unittest import mock

import torch

from attacks import RECIPES, AttackConfig, Capture, PublicInfo, Reconstruction, build_attack
from attacks.batched import reconstruct_batch
from attacks.components import dummies
from attacks.spike_domain import init_dummy
from experiments.bench_cell import add_cell_args, main_cell
from fl_sim.data.registry import load_dataset
from fl_sim.federation.training import loss_gradient
from models import build_model
from models.device import resolve_device


@dataclass(frozen=True)
class Setting:
    label: str
    arch: str
    T: int


SETTINGS = (
    Setting("lenet", "lenet", 1),
    Setting("snn-lenet-T4", "snn-lenet", 4),
    Setting("snn-lenet-T8", "snn-lenet", 8),
)


def make_captures(setting: Setting, count: int) -> list[Capture]:
    """FedSGD captures of the first ``count`` mnist5k training digits, one fresh victim each."""
    public = PublicInfo(
        arch=setting.arch, input_shape=(1, 28, 28), num_classes=10, batch_size=1, T=setting.T
    )
    data = load_dataset("mnist5k", "train")
    captures = []
    for i in range(count):
        torch.manual_seed(i)
        model = build_model(setting.arch, public.input_shape, public.num_classes, T=setting.T)
        update = loss_gradient(model, data.take(slice(i, i + 1)), data.labels[i : i + 1])
        captures.append(Capture(0, i, update, model.state_dict(), public))
    return captures


def agreement(looped: list[Reconstruction], batched: list[Reconstruction]) -> dict[str, float]:
    """How far the batched results are from the looped ones ("close": all within 1e-6)."""

    def rel_diff(a: float, b: float) -> float:
        if math.isnan(a) and math.isnan(b) or a == b:
            return 0.0
        return abs(a - b) / max(abs(a), 1e-30)

    pairs = list(zip(looped, batched, strict=True))
    same = [
        (a.status, a.iterations) == (b.status, b.iterations) and torch.equal(a.labels, b.labels)
        for a, b in pairs
    ]
    rel = [rel_diff(a.grad_loss, b.grad_loss) for a, b in pairs]
    img = [
        float((a.images - b.images).abs().max())
        if a.dummy is None or b.dummy is None
        else float((a.dummy - b.dummy).abs().max())
        for a, b in pairs
    ]
    return {
        "n": len(pairs),
        "same": sum(same),
        "median_rel": statistics.median(rel),
        "max_rel": max(rel),
        "max_img": max(img),
        "close": sum(s and r <= 1e-6 and i <= 1e-6 for s, r, i in zip(same, rel, img, strict=True)),
    }


def float64_check(name: str, captures: list[Capture]) -> dict[str, float]:
    """Both paths in float64, one outer step: they must agree to 1e-6, except where the loop
    itself is that sensitive: its result moves by more than 1e-6 when its initial dummy is
    perturbed by 1e-12 (relative), as happens when a step lands an SNN membrane potential on
    the threshold and the spike pattern, hence the loss, jumps."""
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        attack = build_attack(name, AttackConfig(iterations=1))
        looped = [attack.reconstruct(c) for c in captures]  # type: ignore[union-attr]
        batched = reconstruct_batch(attack, captures)  # type: ignore[arg-type]
        result = agreement(looped, batched)
        off = [
            i
            for i, (a, b) in enumerate(zip(looped, batched, strict=True))
            if agreement([a], [b])["close"] == 0
        ]

        def perturbed(*args: object, **kwargs: object) -> torch.Tensor:
            return init_dummy(*args, **kwargs) * (1 + 1e-12)  # type: ignore[arg-type]

        chaotic = 0
        with mock.patch.object(dummies, "init_dummy", perturbed):
            for i in off:
                again = attack.reconstruct(captures[i])  # type: ignore[union-attr]
                chaotic += agreement([looped[i]], [again])["close"] == 0
        result["chaotic"] = chaotic
        return result
    finally:
        torch.set_default_dtype(old_dtype)


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes right now (from /proc/stat; we are idle here)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return os.getloadavg()[0]
    cores = os.cpu_count() or 1
    return cores * (busy1 - busy0) / max(total1 - total0, 1)


def pick_threads(requested: int) -> tuple[int, str]:
    """Threads to use: the request, or (0) all cores unless other processes are busy, since
    OpenMP threads that must share a core with other work stall each other badly."""
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if requested > 0:
        return requested, f"requested; {cores} cores, {busy:.1f} busy with other work"
    if busy > 0.3:
        return 1, f"auto: {busy:.1f} of {cores} cores busy with other work"
    return cores, f"auto: all {cores} cores, idle otherwise"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=2, help="optimiser steps (outer L-BFGS steps; default 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default 0: auto, see pick_threads)"
    )
    parser.add_argument(
        "--attack", default="dlg", help=f"{', '.join(sorted(RECIPES))}; --cell: dlg, idlg, grnn"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--sizes", default="1,16,64,256", help="batch sizes P")
    parser.add_argument("--loop-captures", type=int, default=16)
    parser.add_argument(
        "--models", default=",".join(s.label for s in SETTINGS), help="subset of the settings"
    )
    add_cell_args(parser)
    args = parser.parse_args(argv)
    threads, why = pick_threads(args.threads)
    torch.set_num_threads(threads)
    try:
        device = resolve_device(args.device)
        if args.cell:
            args.threads = threads
            main_cell(args)
            return 0
    except ValueError as err:
        parser.error(str(err))
    if args.attack not in RECIPES:
        parser.error(f"--attack {args.attack!r}: valid: {', '.join(sorted(RECIPES))}")
    sizes = [int(p) for p in args.sizes.split(",")]
    p_max = max(sizes)
    n_loop = min(p_max, args.loop_captures)
    settings = [s for s in SETTINGS if s.label in args.models.split(",")]
    attack = build_attack(args.attack, AttackConfig(iterations=args.steps))

    print(
        f"torch {torch.__version__}, device {device}, torch.get_num_threads() = "
        f"{torch.get_num_threads()} ({why})"
    )
    parts = attack.settings  # type: ignore[union-attr]
    inner = f" (up to {20 * args.steps} inner iterations)" if parts.optimiser == "lbfgs" else ""
    print(
        f"attack {args.attack}: {args.steps} {parts.optimiser} steps per reconstruction"
        f"{inner}, {parts.objective} objective, {parts.dummy} dummy; mnist5k 1x28x28 "
        "digits, batch size 1"
    )
    print(
        f"loop timed on {n_loop} captures (its cost per capture does not depend on P); "
        "batched: one reconstruct_batch call per P"
    )
    summary: list[str] = []
    failed = False
    for setting in settings:
        start = time.perf_counter()
        captures = [c.to(device) for c in make_captures(setting, p_max)]
        attack.reconstruct(captures[0])  # type: ignore[union-attr]  # warm-up, untimed
        reconstruct_batch(attack, captures[:2])  # type: ignore[arg-type]

        t0 = time.perf_counter()
        looped = [attack.reconstruct(c) for c in captures[:n_loop]]  # type: ignore[union-attr]
        loop_rate = n_loop / (time.perf_counter() - t0)

        rows = []
        batched_first: list[Reconstruction] = []
        for p in sizes:
            t0 = time.perf_counter()
            results = reconstruct_batch(attack, captures[:p])  # type: ignore[arg-type]
            rate = p / (time.perf_counter() - t0)
            rows.append((p, rate))
            if len(results) >= len(batched_first):
                batched_first = results[:n_loop]
        f32 = agreement(looped[: len(batched_first)], batched_first)
        f64 = float64_check(args.attack, captures[:n_loop])
        ok = f64["close"] + f64["chaotic"] == f64["n"]
        failed |= not ok

        print(f"\n{setting.label}  (arch {setting.arch}, T={setting.T})")
        print(f"  {'':>10} {'P':>5} {'rec/s':>9} {'batched/loop':>13}")
        print(f"  {'loop':>10} {'-':>5} {loop_rate:9.2f} {'1.0x':>13}")
        for p, rate in rows:
            print(f"  {'batched':>10} {p:5d} {rate:9.2f} {rate / loop_rate:12.1f}x")
        print(
            f"  check float64, 1 step, {f64['n']} captures: {f64['close']} equal within 1e-6 "
            f"(status, iterations, labels, grad loss, images), {f64['chaotic']} not, where the "
            f"loop itself moves as much when its start moves by 1e-12 -> {'OK' if ok else 'FAILED'}"
        )
        print(
            f"  float32 timed runs, {f32['n']} captures: {f32['same']} same status/iterations/"
            f"labels; grad-loss rel. diff median {f32['median_rel']:.1e}, max "
            f"{f32['max_rel']:.1e} (chaotic L-BFGS, see module docstring)"
        )
        print(f"  ({time.perf_counter() - start:.0f} s for this model)")
        summary.append(f"{setting.label} P={p_max} speedup={dict(rows)[p_max] / loop_rate:.1f}x")
    print()
    for line in summary:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
