"""``fl-sim``: command line of the testbed."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from fl_sim.config import RunConfig
from fl_sim.launcher import SuperLinkError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fl-sim", description="Federated learning with an eavesdropping server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="simulate a federation per arm (ANN, SNN) with an eavesdropper attacking every update",
        description="Runs the Flower apps on the simulation engine (Ray) and writes "
        "leakage.csv, image grids, a per-round plot and a summary to --out.",
    )
    add_config_args(run)
    run.add_argument("--out", help="output directory (config key 'out'; default: results)")
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    attack = sub.add_parser(
        "attack",
        help="attack saved captures (fl-sim run --set save_captures=true) outside a simulation",
        description="Runs the configured attacks on capture files and writes reconstructions "
        "(.pt tensors, and image grids where ground truth is known) and attack.csv. A capture's "
        "ground truth, if its <name>.truth.pt lies beside it, is used for scoring only.",
    )
    attack.add_argument("captures", nargs="+", type=Path, help="capture files (.pt)")
    add_config_args(attack)
    attack.add_argument("--out", required=True, help="output directory")
    judge = sub.add_parser("judge", help="train (or show) the cached judge of a dataset")
    add_config_args(judge)
    judge.add_argument("--retrain", action="store_true", help="train again even if cached")
    return parser


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with config keys (optional)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a config key; keys: {', '.join(RunConfig.keys())}",
    )  # fmt: skip


def load_config(args: argparse.Namespace) -> RunConfig:
    cfg = RunConfig.load(args.config, args.overrides)
    extra: dict[str, object] = {}
    if getattr(args, "out", None):
        extra["out"] = args.out
    if getattr(args, "overwrite", False):
        extra["overwrite"] = True
    cfg = dataclasses.replace(cfg, **extra)  # type: ignore[arg-type]
    # Flower runs the ServerApp in another process and directory: pass absolute paths.
    return dataclasses.replace(
        cfg, out=str(Path(cfg.out).expanduser().resolve()), cache_dir=str(cfg.judge_cache.resolve())
    )


def cmd_run(cfg: RunConfig) -> int:
    from fl_sim.eavesdropper import LEAKAGE_CSV
    from fl_sim.judge import ensure_judge
    from fl_sim.launcher import run_simulation
    from fl_sim.server_app import prepare_out_dir

    out = prepare_out_dir(cfg)  # fail fast, before Flower starts
    ensure_judge(cfg)
    print(
        f"fl-sim: {len(cfg.arms)} arm(s) x {cfg.clients} clients x {cfg.rounds} rounds, "
        f"attacks {', '.join(cfg.attacks) or 'none'}; results in {out}",
        flush=True,
    )
    code = run_simulation(cfg)
    if code != 0:
        print(f"fl-sim: flwr run exited with code {code}", file=sys.stderr)
        return code
    if cfg.attacks and not (out / LEAKAGE_CSV).exists():
        print(f"fl-sim: the run wrote no {out / LEAKAGE_CSV}; see the log above", file=sys.stderr)
        return 1
    print(f"fl-sim: wrote {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
    return 0


def cmd_attack(cfg: RunConfig, paths: list[Path]) -> int:
    import torch

    from attacks.capture_io import load_capture
    from fl_sim.audit import load_truth, truth_path
    from fl_sim.judge import ensure_judge
    from fl_sim.report import append_rows, save_grid, summary_table
    from fl_sim.scoring import score, unscored_rows
    from models import SPIKING

    out = Path(cfg.out)
    csv = out / "attack.csv"
    if csv.exists() and not cfg.overwrite:
        raise FileExistsError(f"{csv} exists; choose another --out or set overwrite=true")
    csv.unlink(missing_ok=True)
    judge = ensure_judge(cfg)
    attacks = cfg.build_attacks()
    all_rows: list[dict[str, object]] = []
    for path in paths:
        capture = load_capture(path)
        arm = "snn" if capture.public.arch in SPIKING else "ann"
        truth = load_truth(truth_path(path)) if truth_path(path).exists() else None
        recons = {}
        for attack in attacks:
            rec = attack.reconstruct(capture)
            stem = path.name.removesuffix(".pt")
            (out / "reconstructions").mkdir(parents=True, exist_ok=True)
            torch.save(
                {"images": rec.images, "labels": rec.labels, "dummy": rec.dummy},
                out / "reconstructions" / f"{stem}-{attack.name}.pt",
            )
            if truth is None:
                rows = unscored_rows(arm, attack.name, capture, rec, judge)
            else:
                scored = score(arm, attack.name, capture, rec, truth, judge)
                rows, recons[attack.name] = scored.rows, scored.matched_images
            append_rows(csv, rows)
            all_rows += rows
            print(
                f"{path.name} {attack.name}: grad loss {rec.grad_loss:.3e}, labels "
                f"{rec.labels.tolist()}, {rec.status}, {rec.seconds:.1f}s",
                flush=True,
            )
        if truth is not None and recons:
            save_grid(
                out / "grids" / f"{path.name.removesuffix('.pt')}.png",
                truth.images.numpy(),
                recons,
                [f"s{i} y={int(y)}" for i, y in enumerate(truth.labels)],
                path.name,
            )
    print(summary_table(all_rows))
    print(f"fl-sim: wrote {csv} and {out / 'reconstructions'}")
    return 0


def cmd_judge(cfg: RunConfig, retrain: bool) -> int:
    from fl_sim.judge import ensure_judge, train_judge

    judge = train_judge(cfg) if retrain else ensure_judge(cfg)
    print(f"judge for {judge.dataset}: test accuracy {judge.accuracy:.2%} ({judge.path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the SuperLink and simulation we started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cfg = load_config(args)
        if args.command == "run":
            return cmd_run(cfg)
        if args.command == "attack":
            return cmd_attack(cfg, args.captures)
        return cmd_judge(cfg, args.retrain)
    except (ValueError, FileNotFoundError, FileExistsError, SuperLinkError) as err:
        parser.exit(2, f"fl-sim: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
