"""``fl-sim``: command line of the testbed."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from fl_sim.config import RunConfig
from fl_sim.ops.launcher import SuperLinkError


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
    run.add_argument(
        "--resume", type=Path, metavar="DIR",
        help="continue the run whose results are in DIR from each arm's last finished round, "
        "with its stored config (--set may raise rounds or change execution settings only)",
    )  # fmt: skip
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
    deploy = sub.add_parser(
        "deploy",
        help="run the same apps on Flower's deployment engine: one OS process per role",
        description="Starts a SuperLink, the ServerApp's SuperExec and one SuperNode per client "
        "(each its own process group, with --netns its own network namespace), submits the run "
        "with flwr run and stops every process it started when the run ends or is interrupted. "
        "Writes the same results as `fl-sim run` to --out.",
    )
    add_config_args(deploy)
    deploy.add_argument("--clients", type=int, help="SuperNodes, one partition each (key clients)")
    deploy.add_argument("--rounds", type=int, help="FL rounds per arm (key rounds)")
    deploy.add_argument("--out", help="output directory (config key 'out'; default: results)")
    deploy.add_argument("--overwrite", action="store_true", help="replace results in --out")
    deploy.add_argument(
        "--netns", action="store_true",
        help="put the SuperLink and each SuperNode in its own network namespace (Linux, root)",
    )  # fmt: skip
    deploy.add_argument(
        "--tls", action="store_true", help="TLS with a throwaway CA and server certificate"
    )
    deploy.add_argument(
        "--workdir", type=Path,
        help="keep logs, pids.json and Flower homes here (default: a temporary dir, removed "
        "after a clean run, kept after a failure)",
    )  # fmt: skip
    submit = sub.add_parser(
        "submit",
        help="flwr run the apps on a running SuperLink (e.g. the docker-compose federation)",
        description="Waits for the SuperLink's health endpoint, then runs `flwr run` on it with "
        "the config (the same command `fl-sim deploy` submits). --out is a path where the "
        "ServerApp runs (in a container: /results/...).",
    )
    add_config_args(submit)
    submit.add_argument("--superlink", required=True, metavar="HOST:PORT")
    submit.add_argument(
        "--root-certificates", type=Path, metavar="CA", help="CA certificate (TLS); else insecure"
    )
    submit.add_argument("--clients", type=int, help="SuperNodes to wait for (key clients)")
    submit.add_argument("--rounds", type=int, help="FL rounds per arm (key rounds)")
    submit.add_argument("--out", help="output directory of the ServerApp (key 'out')")
    submit.add_argument("--overwrite", action="store_true", help="replace results in --out")
    submit.add_argument("--wait", type=float, default=120.0, help="seconds to wait for it")
    certs = sub.add_parser(
        "deploy-certs",
        help="write a throwaway CA and SuperLink certificate (ca.crt, server.pem, server.key)",
    )
    certs.add_argument("directory", type=Path)
    certs.add_argument(
        "--san", action="append", default=[], metavar="NAME",
        help="host name or IP of the SuperLink (repeatable; default: localhost superlink "
        "127.0.0.1)",
    )  # fmt: skip
    l2 = sub.add_parser(
        "l2-stats",
        help="intra-/inter-class l2 distances of a dataset split (reference for leakage l2)",
        description="Pairwise l2 distances between the samples of the config's dataset split "
        "(with its data options), as in the paper's Table VI: per class and averaged over "
        "classes, intra-class (same class) and inter-class (different classes).",
    )
    add_config_args(l2)
    l2.add_argument("--split", choices=["train", "test"], default="train", help="default: train")
    l2.add_argument(
        "--per-class", type=int, metavar="N",
        help="use at most N samples per class, drawn with the config's seed (default: all)",
    )  # fmt: skip
    l2.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
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
    if getattr(args, "resume", None) is not None:
        return load_resume_config(args)
    cfg = RunConfig.load(args.config, args.overrides)
    if cfg.resume:  # --set resume=true: resume --out
        args.resume = Path(args.out or cfg.out)
        return load_resume_config(args)
    extra: dict[str, object] = {}
    for key in ("clients", "rounds"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    if getattr(args, "out", None):
        extra["out"] = args.out
    if getattr(args, "overwrite", False):
        extra["overwrite"] = True
    cfg = dataclasses.replace(cfg, **extra)  # type: ignore[arg-type]
    # Flower runs the ServerApp in another process and directory: pass absolute paths.
    return dataclasses.replace(
        cfg, out=str(Path(cfg.out).expanduser().resolve()), cache_dir=str(cfg.judge_cache.resolve())
    )


def load_resume_config(args: argparse.Namespace) -> RunConfig:
    """``--resume DIR``: the config stored in DIR's results store, with the --config/--set
    changes applied and checked (execution settings only; rounds may be raised)."""
    import tomllib

    from fl_sim.config import parse_overrides
    from fl_sim.results.resume import resume_config

    changes: dict[str, object] = {}
    if args.config:
        with open(args.config, "rb") as fh:
            changes.update(tomllib.load(fh))
    changes.update(parse_overrides(args.overrides))
    for key in ("clients", "rounds"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    if getattr(args, "overwrite", False):
        raise ValueError("--resume continues a run; it cannot be combined with --overwrite")
    out = args.resume.expanduser().resolve()
    for other in (getattr(args, "out", None), changes.get("out")):
        if other and Path(str(other)).expanduser().resolve() != out:
            raise ValueError(f"--resume {out} and out={other} name different directories")
    cfg = resume_config(out, changes)
    return dataclasses.replace(cfg, cache_dir=str(cfg.judge_cache.resolve()))


def cmd_run(cfg: RunConfig) -> int:
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.federation.server_app import finish_from_store, prepare_out_dir
    from fl_sim.ops.launcher import run_simulation
    from fl_sim.results.store import ResultsStore

    out = prepare_out_dir(cfg)  # fail fast, before Flower starts
    if cfg.resume:
        with ResultsStore.open_existing(out) as store:
            done = {arm: store.last_round(arm) for arm in cfg.federated_arms}
            if all(n >= cfg.rounds for n in done.values()):  # nothing to run: report again
                summary = finish_from_store(store, cfg.federated_arms)
                print(f"fl-sim: {out} has every round of {', '.join(cfg.federated_arms)} finished")
                print(summary or "fl-sim: no reconstruction rows")
                return 0
        print(
            "fl-sim: resuming " + ", ".join(f"{arm} after round {n}" for arm, n in done.items()),
            flush=True,
        )
    ensure_judge(cfg)
    preload_data(cfg)
    print(
        f"fl-sim: {len(cfg.federated_arms)} arm(s) x {cfg.clients} clients x {cfg.rounds} rounds, "
        f"attacks {', '.join(cfg.attacks) or 'none'}; results in {out}",
        flush=True,
    )
    code = run_simulation(cfg)
    if code != 0:
        print(f"fl-sim: flwr run exited with code {code}", file=sys.stderr)
        return code
    return check_results(out, cfg)


def check_results(out: Path, cfg: RunConfig) -> int:
    """Exit code of a finished ``flwr run``, which exits 0 even when the ServerApp failed:
    the results store says what really finished."""
    from fl_sim.federation.eavesdropper import LEAKAGE_CSV

    unfinished = unfinished_arms(out, cfg)
    if unfinished:
        print(
            f"fl-sim: the run stopped early ({unfinished}); see the log above. Finished rounds "
            f"are kept: continue with `fl-sim run --resume {out}`",
            file=sys.stderr,
        )
        return 1
    if cfg.attacks and not (out / LEAKAGE_CSV).exists():
        print(f"fl-sim: the run wrote no {out / LEAKAGE_CSV}; see the log above", file=sys.stderr)
        return 1
    print(f"fl-sim: wrote {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
    return 0


def preload_data(cfg: RunConfig) -> None:
    """Load (and, for derived data, build and cache) both splits here, with progress, rather
    than in every client process at once."""
    from fl_sim.federation.task import dataset_split

    for split in ("train", "test"):
        dataset_split(cfg, split)


def unfinished_arms(out: Path, cfg: RunConfig) -> str:
    """Arms whose rounds are not all committed, e.g. "snn: 1 of 3 rounds"; "" if none."""
    from fl_sim.results.store import DB_NAME, ResultsStore

    if not (out / DB_NAME).exists():
        return "no results store was written"
    with ResultsStore.open_existing(out) as store:
        done = {arm: store.last_round(arm) for arm in cfg.federated_arms}
    return ", ".join(f"{a}: {n} of {cfg.rounds} rounds" for a, n in done.items() if n < cfg.rounds)


def cmd_deploy(cfg: RunConfig, args: argparse.Namespace) -> int:
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.federation.server_app import prepare_out_dir
    from fl_sim.ops.deploy import DeployOptions, deploy

    out = prepare_out_dir(cfg)  # fail fast, before any process starts
    ensure_judge(cfg)  # train it here, not while the federation waits
    preload_data(cfg)
    print(
        f"fl-sim deploy: {len(cfg.federated_arms)} arm(s) x {cfg.clients} SuperNodes x "
        f"{cfg.rounds} rounds, attacks {', '.join(cfg.attacks) or 'none'}; results in {out}",
        flush=True,
    )
    options = DeployOptions(netns=args.netns, tls=args.tls, workdir=args.workdir)
    deploy(cfg, options)
    return check_results(out, cfg)


def cmd_submit(cfg: RunConfig, args: argparse.Namespace) -> int:
    import tempfile

    from fl_sim.ops.deploy import submit

    with tempfile.TemporaryDirectory(prefix="fl-sim-submit-") as work:
        result = submit(cfg, args.superlink, args.root_certificates, Path(work), wait_s=args.wait)
    if not result.ok:
        print(
            f"fl-sim: run {result.run_id} {result.status or 'did not start'} (flwr run exit "
            f"code {result.code}) {result.details}",
            file=sys.stderr,
        )
        return result.code or 1
    print(f"fl-sim: run {result.run_id} {result.status}")
    return 0


def cmd_deploy_certs(args: argparse.Namespace) -> int:
    from fl_sim.ops.certs import DEFAULT_SANS, write_certs

    files = write_certs(args.directory, tuple(args.san) or DEFAULT_SANS)
    print(f"fl-sim: wrote {files.ca}, {files.cert} and {files.key}")
    return 0


def cmd_attack(cfg: RunConfig, paths: list[Path]) -> int:
    import torch

    from attacks.capture_io import load_capture
    from fl_sim.evaluation.audit import load_truth, truth_path
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.evaluation.scoring import score, unscored_rows
    from fl_sim.results.report import append_rows, save_grid, summary_table
    from models import SPIKING

    out = Path(cfg.out)
    csv = out / "attack.csv"
    if csv.exists() and not cfg.overwrite:
        raise FileExistsError(f"{csv} exists; choose another --out or set overwrite=true")
    csv.unlink(missing_ok=True)
    judge = ensure_judge(cfg)
    attacks = cfg.build_attacks()
    all_rows: list[dict[str, object]] = []
    captures = [(path, load_capture(path)) for path in paths]
    for path, capture in captures:  # fail before any (long) attack runs
        if capture.public.input_kind != judge.kind:
            raise ValueError(
                f"{path} holds {capture.public.input_kind} data "
                f"{capture.public.input_shape}, but the judge of dataset {cfg.dataset!r} takes "
                f"{judge.kind} data: pass the run's dataset, e.g. --set dataset=NAME"
            )
    for path, capture in captures:
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
    from fl_sim.evaluation.judge import describe, ensure_judge, train_judge

    judge = train_judge(cfg) if retrain else ensure_judge(cfg)
    print(f"judge: {describe(judge)}; {judge.train_size} train / {judge.test_size} test")
    print(f"judge: {judge.path}")
    return 0


def cmd_l2_stats(args: argparse.Namespace) -> int:
    """``fl-sim l2-stats``: Table VI of the config's dataset split, optionally as JSON."""
    import json
    import time

    from fl_sim.data.reference_l2 import format_table, reference_l2_for_config

    cfg = RunConfig.load(args.config, args.overrides)
    start = time.perf_counter()
    result = reference_l2_for_config(cfg, args.split, args.per_class)
    loaded = time.perf_counter() - start - result.seconds
    print(format_table(result))
    intra = result.intra_pooled.pairs if result.intra_pooled else 0
    inter = result.inter_pooled.pairs if result.inter_pooled else 0
    print(
        f"fl-sim: {result.samples} samples, {intra} intra + {inter} inter pairs; distances "
        f"{result.seconds:.2f}s (loading {loaded:.2f}s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"fl-sim: wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the SuperLink and simulation we started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command == "deploy-certs":
            return cmd_deploy_certs(args)
        if args.command == "l2-stats":
            return cmd_l2_stats(args)
        cfg = load_config(args)
        if args.command == "run":
            return cmd_run(cfg)
        if args.command == "deploy":
            return cmd_deploy(cfg, args)
        if args.command == "submit":
            return cmd_submit(cfg, args)
        if args.command == "attack":
            return cmd_attack(cfg, args.captures)
        return cmd_judge(cfg, args.retrain)
    except (ValueError, FileNotFoundError, FileExistsError, SuperLinkError) as err:
        parser.exit(2, f"fl-sim: error: {err}\n")
    except KeyboardInterrupt:  # what we started was stopped on the way out
        parser.exit(130, "fl-sim: interrupted\n")


if __name__ == "__main__":
    sys.exit(main())
