"""``fl-sim``: command line of the testbed."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from fl_sim.commands.attack import check_readable, cmd_attack
from fl_sim.commands.report import add_report_parser, cmd_report
from fl_sim.commands.reproduce import add_reproduce_parser, cmd_reproduce
from fl_sim.commands.run import (
    cmd_compose_file,
    cmd_deploy,
    cmd_deploy_certs,
    cmd_run,
    cmd_submit,
)
from fl_sim.commands.tools import cmd_judge, cmd_l2_stats
from fl_sim.federation.run_config import RunConfig

if TYPE_CHECKING:
    from fl_sim.ops.proctree import Proc


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
    run.add_argument(
        "--keep-temp", action="store_true",
        help="keep the temporary Flower home (SuperLink and Ray logs) and say where",
    )  # fmt: skip
    add_verbose_arg(run)
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
    deploy.add_argument(
        "--keep-temp", action="store_true",
        help="keep the temporary work dir even after a clean run, and say where",
    )  # fmt: skip
    add_verbose_arg(deploy)
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
    add_verbose_arg(submit)
    compose = sub.add_parser(
        "compose-file",
        help="write a docker-compose file for N SuperNodes (or its TLS override)",
        description="Prints docker-compose.yml (with --tls: docker-compose.tls.yml) for a "
        "federation of --clients SuperNodes, each holding one partition; --set items go to "
        "the submit service's run config. The checked-in files are the output for 4 clients.",
    )
    compose.add_argument("--clients", type=int, default=4, help="SuperNodes (default: 4)")
    compose.add_argument("--tls", action="store_true", help="write the TLS override instead")
    compose.add_argument(
        "--out", default="/results/compose",
        help="results dir of the run inside the containers, under /results/ (the mounted "
        "./results); default: /results/compose",
    )  # fmt: skip
    compose.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a config key of the submitted run (repeatable)",
    )  # fmt: skip
    compose.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
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
    add_reproduce_parser(sub)
    add_report_parser(sub)
    return parser


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose", action="store_true",
        help="show Flower's own log records on the console too (always written to "
        "flower.log in the out dir)",
    )  # fmt: skip


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
    if cfg.results.resume:  # --set resume=true: resume --out
        args.resume = Path(args.out or cfg.results.out)
        return load_resume_config(args)
    extra: dict[str, object] = {}
    for key in ("clients", "rounds"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    if getattr(args, "out", None):
        extra["out"] = args.out
    if getattr(args, "overwrite", False):
        extra["overwrite"] = True
    cfg = cfg.replace(**extra)  # type: ignore[arg-type]
    # Flower runs the ServerApp in another process and directory: pass absolute paths.
    return cfg.replace(
        out=str(Path(cfg.results.out).expanduser().resolve()),
        cache_dir=str(cfg.data.cache_path.resolve()),
    )


def load_resume_config(args: argparse.Namespace) -> RunConfig:
    """``--resume DIR``: the config stored in DIR's results store, with the --config/--set
    changes applied and checked (execution settings only; rounds may be raised)."""
    from fl_sim.config import parse_overrides, read_config_file
    from fl_sim.federation.resume import resume_config

    changes: dict[str, object] = {}
    if args.config:
        changes.update(read_config_file(args.config))
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
    return cfg.replace(cache_dir=str(cfg.data.cache_path.resolve()))


def user_errors() -> tuple[type[Exception], ...]:
    """Errors of the user's input or setup, reported in one line with exit code 2. The
    launcher's SuperLinkError counts once a command has imported the launcher (importing it
    up front would cost every command, ``--help`` included, its HTTP client)."""
    launcher = sys.modules.get("fl_sim.ops.launcher")
    extra = (launcher.SuperLinkError,) if launcher is not None else ()
    return (ValueError, FileNotFoundError, FileExistsError, *extra)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the SuperLink and simulation we started are stopped;
    # both first drop the out dir's run lock, so the ServerApp commits no further round.
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        if args.command == "deploy-certs":
            return cmd_deploy_certs(args)
        if args.command == "compose-file":
            return cmd_compose_file(args)
        if args.command == "l2-stats":
            return cmd_l2_stats(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "attack":  # missing inputs, before the config's checks load torch
            for path in args.captures:
                check_readable(path, "capture file")
        cfg = load_config(args)
        if args.command == "run":
            return cmd_run(cfg, keep_temp=args.keep_temp, verbose=args.verbose)
        if args.command == "deploy":
            return cmd_deploy(cfg, args)
        if args.command == "submit":
            return cmd_submit(cfg, args)
        if args.command == "attack":
            return cmd_attack(cfg, args.captures)
        return cmd_judge(cfg, args.retrain)
    except user_errors() as err:
        parser.exit(2, f"fl-sim: error: {err}\n")
    except OSError as err:  # the machine refused (disk full, permission, read-only): say so
        parser.exit(2, f"fl-sim: error: {os_error_line(err)}\n")
    except sqlite3.DatabaseError as err:
        parser.exit(2, f"fl-sim: error: a results store could not be read or written: {err}\n")
    except KeyboardInterrupt:  # what we started is stopped on the way out
        sys.stderr.write("fl-sim: interrupted\n")
        end_descendants_and_exit(130)


def on_stop_signal(signum: int, frame: object) -> None:
    """SIGINT / SIGTERM: drop the out dir's locks, then unwind (KeyboardInterrupt / exit 143)."""
    from fl_sim.ops.outlock import release_held_locks

    release_held_locks()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(143)


def os_error_line(err: OSError) -> str:
    """One line for an OSError: what failed on which file, e.g. "No space left on device:
    /r/checkpoints/ann-r001.pt"."""
    what = err.strerror or str(err) or type(err).__name__
    files = [f for f in (err.filename, err.filename2) if f is not None]
    return f"{what}: {' -> '.join(map(str, files))}" if files else what


def end_descendants_and_exit(code: int) -> NoReturn:
    """End every process this one started that is still there (a local Ray among them:
    its processes ignore the Ctrl-C, see fl_sim.ops.ray_tasks) and exit at once, without
    exit handlers that would wait on them (ray.shutdown). Results are committed as made."""
    from fl_sim.ops import proctree

    sys.stdout.flush()
    sys.stderr.flush()
    if proctree.available():
        proctree.end_tree(live_descendants, grace=1.0)
    os._exit(code)


def live_descendants() -> list[Proc]:
    """The processes below this one that still run: a child it killed stays a zombie until
    reaped, and waiting for zombies to go kept an interrupted command 5 s longer."""
    from fl_sim.ops import proctree

    procs = (proctree.read_proc(p) for p in proctree.descendants(os.getpid()))
    return [p for p in procs if p is not None and p.alive]


if __name__ == "__main__":
    sys.exit(main())
