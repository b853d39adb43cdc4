"""``fl-sim attack``: the configured attacks on saved captures, outside a simulation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fl_sim.federation.run_config import RunConfig


def cmd_attack(cfg: RunConfig, paths: list[Path]) -> int:
    """Attack every capture file, score it if its ground truth lies beside it, and write
    ``attack.csv``, the reconstructions and (where scored) an image grid per capture. Exit
    code 1 if any capture's attack or scoring failed (its rows record it)."""
    from fl_sim.results.preflight import check_out_dir

    out = Path(cfg.results.out)
    check_out_dir(out)
    csv = out / "attack.csv"
    if csv.is_dir():
        raise ValueError(f"{csv} is a directory where the attack writes a file: move it away")
    if csv.exists() and not cfg.results.overwrite:
        raise FileExistsError(f"{csv} exists; choose another --out or set overwrite=true")
    # Every input is checked and read before the judge is prepared (possibly trained).
    for path in paths:
        check_readable(path, "capture file")
    import torch

    from attacks.capture_io import load_capture
    from fl_sim.evaluation.attack_work import Execution
    from fl_sim.evaluation.audit import load_truth, truth_path
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.evaluation.leakage import Target, attack_and_score
    from fl_sim.results.report import append_rows, save_grid, summary_table
    from models import SPIKING

    captures = [(path, load_capture(path)) for path in paths]
    for path, capture in captures:  # fail before any (long) attack runs
        if capture.public.input_kind != cfg.data.kind:
            raise ValueError(
                f"{path} holds {capture.public.input_kind} data "
                f"{capture.public.input_shape}, but the judge of dataset {cfg.data.dataset!r} "
                f"takes {cfg.data.kind} data: pass the run's dataset, e.g. --set dataset=NAME"
            )
    truths = {}
    for path, _ in captures:
        if truth_path(path).exists():
            check_readable(truth_path(path), "ground-truth file")
            truths[path] = load_truth(truth_path(path))
    attacks = cfg.attack.build_attacks()
    csv.unlink(missing_ok=True)
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    targets = [
        Target("snn" if capture.public.arch in SPIKING else "ann", capture, truths.get(path))
        for path, capture in captures
    ]
    outcomes = attack_and_score(
        targets,
        attacks,
        judge,
        batched=cfg.attack.batched,
        log=lambda line: print(line, flush=True),
        execution=Execution.of(cfg.runtime),
    )
    all_rows: list[dict[str, object]] = []
    (out / "reconstructions").mkdir(parents=True, exist_ok=True)
    for (path, _), target in zip(captures, targets, strict=True):
        stem = path.name.removesuffix(".pt")
        recons = {}
        for outcome in (o for o in outcomes if o.target is target):
            rec = outcome.reconstruction
            if rec is not None:
                torch.save(
                    {"images": rec.images, "labels": rec.labels, "dummy": rec.dummy},
                    out / "reconstructions" / f"{stem}-{outcome.attack}.pt",
                )
            if outcome.images is not None:
                recons[outcome.attack] = outcome.images
            append_rows(csv, outcome.rows)
            all_rows += outcome.rows
        if target.truth is not None and recons:
            save_grid(
                out / "grids" / f"{stem}.png",
                target.truth.images.numpy(),
                recons,
                [f"s{i} y={int(y)}" for i, y in enumerate(target.truth.labels)],
                path.name,
            )
    print(summary_table(all_rows))
    print(f"fl-sim: wrote {csv} and {out / 'reconstructions'}")
    failed = sum(o.error is not None for o in outcomes)
    if failed:
        print(
            f"fl-sim: {failed} of {len(outcomes)} (capture, attack) pairs failed (their rows "
            "in attack.csv have status attack-failed or score-failed); see the log above",
            file=sys.stderr,
        )
        return 1
    return 0


def check_readable(path: Path, what: str) -> None:
    """A one-line ValueError if ``path`` is not an existing, readable file."""
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{what} {path} is not readable (permission denied)")
