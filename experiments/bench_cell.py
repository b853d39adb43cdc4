"""One Table IV cell end to end: ``--samples`` mnist5k digits (the paper: 1000), one attack,
one arm, each digit on its own freshly initialised victim (Experiment 1), under the paper's
protocol (``experiments.paper.protocol.PAPER_PROTOCOL``) on ``--device``.

Times the three stages separately: building the captures (victim init + the client's
gradient), attacking them with the batched engine in chunks of ``--batch`` (the device's
work), and scoring (SSIM, judge). Prints the timings and the cell's ASR and SSIM with n and
95% intervals, so a fast run is also seen to be a correct one. Run through
``python -m experiments.bench_attacks --cell ...``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from experiments.paper.protocol import PAPER_PROTOCOL, sample_indices
from experiments.paper.summary import asr, mean_of
from experiments.trials import fresh_capture
from fl_sim.evaluation.attack_work import Execution
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import describe, ensure_judge
from fl_sim.evaluation.leakage import Target, attack_and_score
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split

CELL_ATTACKS = ("dlg", "idlg", "grnn")  # Table IV's


@dataclass
class CellTiming:
    captures: float = 0.0
    attack: float = 0.0
    scoring: float = 0.0

    @property
    def total(self) -> float:
        return self.captures + self.attack + self.scoring


def add_cell_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--cell: one Table IV cell end to end")
    group.add_argument("--cell", action="store_true", help="time one Table IV cell")
    group.add_argument("--arm", default="ann", choices=("ann", "snn"))
    group.add_argument("--samples", type=int, default=1000, help="digits (paper: 1000)")
    group.add_argument("--batch", type=int, default=256, help="captures per batched call")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")


def cell_config(attack: str, arm: str, device: str, overrides: list[str]) -> RunConfig:
    if attack not in CELL_ATTACKS:
        raise ValueError(f"--attack {attack!r} is not a Table IV attack; valid: {CELL_ATTACKS}")
    items = [
        *PAPER_PROTOCOL, "dataset=mnist5k", f"attacks={attack}", f"arms={arm}",
        f"device={device}", *overrides,
    ]  # fmt: skip
    return RunConfig.load(overrides=items)


def run_cell(
    cfg: RunConfig, samples: int, batch: int, log: Callable[[str], None] = print
) -> tuple[CellTiming, list[dict[str, object]]]:
    """The cell's leakage rows and the time of each stage."""
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    timing = CellTiming()
    data = dataset_split(cfg.data, "train")
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
    log(f"judge: {describe(judge)}; chance {1 / data.num_classes:.1%}")
    (attack,) = cfg.attack.build_attacks()
    execution = Execution(cfg.runtime.device)
    arm = cfg.federated_arms[0]
    rows: list[dict[str, object]] = []
    indices = sample_indices(len(data), samples, cfg.federation.seed)
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch]
        began = time.perf_counter()
        targets = []
        for i in chunk:
            truth = GroundTruth(data.take([i]), data.labels[i : i + 1])
            targets.append(Target(arm, fresh_capture(cfg, arm, i, truth), truth))
        timing.captures += time.perf_counter() - began
        began = time.perf_counter()
        outcomes = attack_and_score(
            targets, [attack], judge, batched=cfg.attack.batched, log=log, progress=False,
            execution=execution,
        )  # fmt: skip
        spent = time.perf_counter() - began
        attacked = sum(o.reconstruction.seconds for o in outcomes if o.reconstruction) or spent
        timing.attack += min(attacked, spent)  # per-capture seconds sum to the batch's time
        timing.scoring += max(0.0, spent - attacked)
        rows += [row for o in outcomes for row in o.rows]
        done = min(start + batch, len(indices))
        log(f"cell: {done}/{len(indices)} samples, {timing.total:.1f}s")
    return timing, rows


def main_cell(args: argparse.Namespace) -> None:
    """``bench_attacks --cell``: time one cell and print its timing and leakage."""
    device = getattr(args, "device", "cpu")
    cfg = cell_config(args.attack, args.arm, device, args.overrides)
    torch.set_num_threads(args.threads)
    print(
        f"Table IV cell: {args.attack} on {cfg.federated_arms[0]} ({cfg.federation.victim}), "
        "mnist5k, "
        f"{args.samples} samples, batch {args.batch}, device {cfg.runtime.torch_device}, "
        f"{torch.get_num_threads()} torch thread(s)",
        flush=True,
    )
    timing, rows = run_cell(cfg, args.samples, args.batch)
    n = len(rows)
    print(
        f"captures {timing.captures:.1f}s, attack {timing.attack:.1f}s, scoring "
        f"{timing.scoring:.1f}s; total {timing.total:.1f}s "
        f"({timing.total / max(1, args.samples):.3f}s per sample)"
    )
    print(f"n={n} ASR % {asr(rows).text('.1f')}, SSIM {mean_of(rows, 'ssim').text('.3f')}")
    print(f"cell {args.attack} {args.arm} samples={args.samples} seconds={timing.total:.1f}")
