"""Flower ServerApp: one federation per arm (ANN, SNN) on the same clients, partitions,
seeds and batches, each with an eavesdropping FedSGD strategy."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import flwr
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp

from attacks.victim import model_for
from fl_sim.audit import ReplayAudit
from fl_sim.config import RunConfig
from fl_sim.datasets import load_dataset
from fl_sim.eavesdropper import LEAKAGE_CSV, Eavesdropper
from fl_sim.judge import JUDGE_ARCH, Judge, accuracy, ensure_judge
from fl_sim.report import read_rows, write_report
from fl_sim.strategy import EavesdroppingFedSGD
from fl_sim.task import public_info

app = ServerApp()

FAULTS_CSV = "faults.csv"


class FaultLog:
    """Records every reply left out of aggregation in ``faults.csv`` (and the console)."""

    def __init__(self, out: Path, arm: str, log: Callable[[str], None]) -> None:
        self.path, self.arm, self.log = out / FAULTS_CSV, arm, log

    def __call__(self, server_round: int, msg: Message, reason: str) -> None:
        client = ""
        if not msg.has_error() and "meta" in msg.content.config_records:
            client = str(msg.content["meta"].get("partition-id", ""))
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["arm", "round", "node", "client", "reason"])
            writer.writerow([self.arm, server_round, msg.metadata.src_node_id, client, reason])
        self.log(
            f"[{self.arm} r{server_round}] left out a reply (client {client or '?'}): {reason}"
        )


RESULT_FILES = (
    LEAKAGE_CSV, "summary.txt", "leakage_per_round.png", "grids", "run.json", "captures",
    FAULTS_CSV,
)  # fmt: skip


def say(text: str) -> None:
    print(text, flush=True)


def prepare_out_dir(cfg: RunConfig) -> Path:
    """Create ``cfg.out``; refuse to mix with an earlier run's results unless overwrite."""
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    old = [name for name in RESULT_FILES if (out / name).exists()]
    if old and not cfg.overwrite:
        raise FileExistsError(
            f"{out} already holds results ({', '.join(old)}); choose another out directory "
            "or set overwrite=true"
        )
    for name in old:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def initial_model(cfg: RunConfig, arm: str) -> torch.nn.Module:
    """Seeded init: both arms start from the same weights (same parameter names/shapes)."""
    pub = public_info(cfg, arm)
    torch.manual_seed(cfg.seed)
    return model_for(pub)


def write_run_record(out: Path, cfg: RunConfig, judge: Judge) -> None:
    """run.json: the config and the judge (with its test accuracy) that produced the results."""
    record = {
        "config": dataclasses.asdict(cfg),
        "judge": {
            "arch": JUDGE_ARCH,
            "dataset": judge.dataset,
            "test_accuracy": judge.accuracy,
            "path": str(judge.path),
        },
        "versions": {"torch": torch.__version__, "flwr": flwr.__version__},
    }
    (out / "run.json").write_text(json.dumps(record, indent=2))


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = RunConfig.from_mapping(context.run_config)
    torch.set_num_threads(cfg.threads)
    run_federation(grid, cfg)


def run_federation(grid: Grid, cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Run every arm; return each arm's final global model (state dict)."""
    out = prepare_out_dir(cfg)
    say(f"fl-sim: results go to {out}")
    judge = ensure_judge(cfg, say)
    write_run_record(out, cfg, judge)
    audit = ReplayAudit(cfg)
    test = load_dataset(cfg.dataset, "test", cfg.data_root or None)
    finals: dict[str, dict[str, torch.Tensor]] = {}
    for arm in cfg.arms:
        start = time.perf_counter()
        public = public_info(cfg, arm)
        model = initial_model(cfg, arm)
        tap = None
        if cfg.attacks:
            attacks = cfg.build_attacks()
            tap = Eavesdropper(
                arm, public, attacks, judge, audit, out, cfg.grids, say, cfg.save_captures,
                cfg.batched,
            )  # fmt: skip

        def evaluate(server_round: int, arrays: ArrayRecord, model=model, arm=arm) -> MetricRecord:
            model.load_state_dict(arrays.to_torch_state_dict())
            acc = accuracy(model, test.images, test.labels)
            say(f"[{arm} r{server_round}] global model test accuracy {acc:.2%}")
            return MetricRecord({"accuracy": acc})

        say(f"=== arm {arm}: {public.arch}, {cfg.clients} clients, {cfg.rounds} rounds ===")
        strategy = EavesdroppingFedSGD(
            lr=cfg.lr,
            tap=tap,
            on_fault=FaultLog(out, arm, say),
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=cfg.clients,
            min_available_nodes=cfg.clients,
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=cfg.rounds,
            train_config=ConfigRecord({"arm": arm}),
            evaluate_fn=evaluate,
        )
        finals[arm] = result.arrays.to_torch_state_dict()
        torch.save(finals[arm], out / f"final_model_{arm}.pt")
        say(f"=== arm {arm} done in {time.perf_counter() - start:.1f}s ===")
    csv = out / LEAKAGE_CSV
    if csv.exists():
        summary = write_report(out, read_rows(csv))
        say(f"judge {JUDGE_ARCH}: test accuracy {judge.accuracy:.2%} on {judge.dataset}\n{summary}")
    return finals
