"""A tiny results store written through ResultsStore's own API (real grid PNGs, captures,
faults, committed rounds): input for the HTML report tests, no federation needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fl_sim.results.report import save_grid
from fl_sim.results.store import ResultsStore

ATTACKS = ("dlg", "idlg")
CLIENTS = (0, 1)
SAMPLES = (0, 1)  # batch of 2: four grid columns per round
STATE = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}
FAULT_REASON = "client error: RuntimeError: <injected> & failed"


def record(num_classes: int | None = 10, config: dict[str, object] | None = None) -> dict:
    """The run.json-like record start_run takes."""
    judge: dict[str, object] = {"arch": "lenet5", "dataset": "mnist5k", "test_accuracy": 0.97}
    if num_classes is not None:
        judge["num_classes"] = num_classes
    cfg = config or {"clients": 2, "rounds": 2, "attacks": list(ATTACKS), "seed": 0}
    return {"config": cfg, "judge": judge, "versions": {"torch": "test"}}


def leak_row(arm: str, rnd: int, client: int, attack: str, sample: int) -> dict[str, object]:
    """A deterministic leakage row; snn round 2, client 1, sample 1, dlg failed (no metrics)."""
    label = 3 + client + 2 * sample
    leaked = (client + sample + rnd) % 2 == 0
    failed = (arm, rnd, client, sample, attack) == ("snn", 2, 1, 1, "dlg")
    ssim = 0.1 * client + 0.05 * sample + 0.01 * rnd + (0.3 if attack == "idlg" else 0.0)
    ssim += 0.02 if arm == "snn" else 0.0
    return {
        "arm": arm, "round": rnd, "client": client, "attack": attack, "sample": sample,
        "label_true": label, "label_pred": label, "label_correct": True,
        "judge_pred": None if failed else (label if leaked else (label + 1) % 10),
        "judge_correct": None if failed else leaked,
        "mse": math.nan if failed else 0.01 * rnd, "psnr": math.nan if failed else 20.0 + rnd,
        "ssim": math.nan if failed else round(ssim, 6), "l2": math.nan if failed else 1.5,
        "grad_loss": 1e-3, "status": "attack-failed" if failed else "ok",
        "seconds": 0.5 + client,
    }  # fmt: skip


def make_run(
    out: Path,
    rounds: int = 2,
    arms: Sequence[str] = ("ann", "snn"),
    finished: bool = True,
    fault: bool = True,
    num_classes: int | None = 10,
    config: dict[str, object] | None = None,
) -> Path:
    """Write a run of ``rounds`` rounds per arm into ``out``; returns ``out``."""
    rng = np.random.default_rng(0)
    captions = [f"c{c} s{s} y={3 + c + 2 * s}" for c in CLIENTS for s in SAMPLES]
    with ResultsStore(out) as store:
        store.start_run(record(num_classes, config))
        for arm in arms:
            for rnd in range(1, rounds + 1):
                rows = [
                    leak_row(arm, rnd, c, a, s) for a in ATTACKS for c in CLIENTS for s in SAMPLES
                ]
                truth = rng.uniform(0, 1, (len(captions), 1, 8, 8))
                grid = out / "grids" / f"{arm}-round{rnd:03d}.png"
                recons = {"dlg": truth * 0.5, "idlg": truth}
                save_grid(grid, truth, recons, captions, f"{arm} round {rnd}")
                store.add_reconstructions(rows, grid)
                for client in CLIENTS:
                    store.add_capture(arm, rnd, client, True)
                if fault and arm == "snn" and rnd == rounds:
                    store.add_fault(arm, rnd, 2**64 - 5, 1, FAULT_REASON)
                store.commit_round(
                    arm, rnd, STATE, accuracy=0.1 * rnd, seconds=2.0 + rnd, replies=2
                )
        if finished:
            store.finish_run()
    return out
