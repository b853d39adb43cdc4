"""``fl-sim run``, ``deploy``, ``submit`` and ``deploy-certs``: running the federation."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fl_sim.federation.run_config import RunConfig

if TYPE_CHECKING:
    from fl_sim.ops.console import Console


def cmd_run(cfg: RunConfig, keep_temp: bool = False, verbose: bool = False) -> int:
    """``fl-sim run``: one writer on the out dir at a time (its run lock, held throughout)."""
    from fl_sim.ops.outlock import run_lock

    preflight(cfg)
    with run_lock(cfg.results.out, "fl-sim run"):
        return _run_locked(cfg, keep_temp, verbose)


def preflight(cfg: RunConfig) -> None:
    """Everything ``run``/``deploy`` can check before it starts anything or writes anything
    (``fl_sim.results.preflight``): the out dir, the output files, a warm start's checkpoint,
    on resume the store and the checkpoints it continues from, and free disk space."""
    from fl_sim.federation.server_app import initial_model
    from fl_sim.results import preflight as check

    out = Path(cfg.results.out)
    check.check_out_dir(out)
    if out.is_dir():
        check.check_outputs(out)
    # a warm start's checkpoint fits
    states = {
        arm: initial_model(cfg.federation, cfg.data, arm).state_dict() for arm in cfg.federated_arms
    }
    done = {arm: 0 for arm in states}
    if cfg.results.resume:  # its store passed check_store when the config was read from it
        done = check.check_checkpoints(out, states)
    left = {arm: max(0, cfg.federation.rounds - n) for arm, n in done.items()}
    check.check_free_space(
        out,
        check.expected_write_bytes(left, states, cfg.federation.clients, cfg.results.save_captures),
    )


def _run_locked(cfg: RunConfig, keep_temp: bool, verbose: bool) -> int:
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.federation.server_app import finish_from_store, prepare_out_dir
    from fl_sim.results.store import ResultsStore

    out = prepare_out_dir(cfg.results)  # fail fast, before Flower starts
    if cfg.results.resume:
        with ResultsStore.open_existing(out) as store:
            done = {arm: store.last_round(arm) for arm in cfg.federated_arms}
            if all(n >= cfg.federation.rounds for n in done.values()):  # report again
                summary = finish_from_store(store, cfg)
                print(f"fl-sim: {out} has every round of {', '.join(cfg.federated_arms)} finished")
                print(summary or "fl-sim: no reconstruction rows")
                return 0
        print(
            "fl-sim: resuming " + ", ".join(f"{arm} after round {n}" for arm, n in done.items()),
            flush=True,
        )
    ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    preload_data(cfg)
    print(f"fl-sim: {plan_line(cfg, 'clients')}; results in {out}", flush=True)
    code, console = simulate(cfg, verbose, keep_temp)
    if code != 0:
        hint = console.failure_hint()
        print(
            f"fl-sim: flwr run exited with code {code}: {hint}. {resume_advice(out)}",
            file=sys.stderr,
        )
        return code
    return check_results(out, cfg, console.failure_hint())


def check_results(out: Path, cfg: RunConfig, hint: str = "see the log above") -> int:
    """Exit code of a finished ``flwr run``, which exits 0 even when the ServerApp failed:
    the results store says what really finished. ``hint`` says where to read why."""
    from fl_sim.federation.eavesdropper import LEAKAGE_CSV

    unfinished = unfinished_arms(out, cfg)
    if unfinished:
        advice = resume_advice(out)
        print(f"fl-sim: the run stopped early ({unfinished}): {hint}. {advice}", file=sys.stderr)
        return 1
    if cfg.attack.attacks and not (out / LEAKAGE_CSV).exists():
        print(f"fl-sim: the run wrote no {out / LEAKAGE_CSV}: {hint}", file=sys.stderr)
        return 1
    names = sorted(  # not the locks, nor SQLite's side files
        p.name for p in out.iterdir() if not p.name.startswith(".") and p.suffix not in SIDE_FILES
    )
    print(f"fl-sim: wrote {', '.join(names)} in {out}")
    return 0


SIDE_FILES = (".sqlite-wal", ".sqlite-shm", ".sqlite-journal")
ENGINE_START_TRIES = 3  # Ray gives its raylet a fixed 30 s to register (ray/_private/node.py)
ENGINE_RETRY_WAIT_S = (15.0, 45.0)  # before the 2nd and 3rd try: let a busy machine settle


def simulate(
    cfg: RunConfig,
    verbose: bool = False,
    keep_temp: bool = False,
    run: Callable[..., int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, Console]:
    """``run_simulation`` (or ``run``) with Flower's records in ``flower.log``; a start that
    failed because the simulation engine (Ray) did not come up in time (a busy machine) is
    tried again after a pause, up to ``ENGINE_START_TRIES`` times in all, resuming what the
    failed try stored. Returns the exit code and the console of the last try."""
    from fl_sim.ops.console import FLOWER_LOG, Console
    from fl_sim.ops.root_cause import engine_start_failed
    from fl_sim.results.store import DB_NAME

    if run is None:
        from fl_sim.ops.launcher import run_simulation as run
    out = Path(cfg.results.out)
    attempt = 1
    while True:
        with Console(
            out / FLOWER_LOG, verbose, append=cfg.results.resume or attempt > 1
        ) as console:
            code = run(cfg.flower_run(), console, keep_temp=keep_temp)
        if attempt == ENGINE_START_TRIES or not engine_start_failed(console.error_lines):
            return code, console
        wait = ENGINE_RETRY_WAIT_S[min(attempt, len(ENGINE_RETRY_WAIT_S)) - 1]
        print(
            f"fl-sim: the simulation engine (Ray) did not start in time ({console.failure_hint()})"
            f"; trying again in {wait:.0f}s ({attempt + 1}/{ENGINE_START_TRIES})",
            file=sys.stderr,
            flush=True,
        )
        sleep(wait)
        if (out / DB_NAME).is_file() and not cfg.results.resume:  # the failed try recorded the run
            cfg = cfg.replace(resume=True, overwrite=False)
        attempt += 1


def resume_advice(out: Path) -> str:
    """What to do after a failed run: resume where a resume's preflight passes now, else
    why it would be refused (a cause that outlives the run, e.g. a file in a directory's
    place or a full disk), so the advice never repeats the failure it follows."""
    import sqlite3

    from fl_sim.federation.resume import resume_config
    from fl_sim.results.store import DB_NAME

    if not (out / DB_NAME).is_file():
        return "Nothing was recorded: fix the cause and start the run again"
    try:
        preflight(resume_config(out))
    except (ValueError, OSError, sqlite3.Error) as err:
        return f"Finished rounds are kept, but a resume would be refused now: {err}"
    return f"Finished rounds are kept: continue with `fl-sim run --resume {out}`"


def plan_line(cfg: RunConfig, clients: str) -> str:
    """What a run is about to do, e.g. "2 arm(s) x 4 clients x 3 rounds, attacks dlg"."""
    attacks = ", ".join(cfg.attack.attacks) or "none"
    fed = cfg.federation
    return (
        f"{len(cfg.federated_arms)} arm(s) x {fed.clients} {clients} x {fed.rounds} rounds, "
        f"attacks {attacks}"
    )


def preload_data(cfg: RunConfig) -> None:
    """Load (and, for derived data, build and cache) both splits here, with progress, rather
    than in every client process at once."""
    from fl_sim.federation.task import dataset_split

    for split in ("train", "test"):
        dataset_split(cfg.data, split)


def unfinished_arms(out: Path, cfg: RunConfig) -> str:
    """Arms whose rounds are not all committed, e.g. "snn: 1 of 3 rounds"; "" if none."""
    from fl_sim.results.store import DB_NAME, ResultsStore

    if not (out / DB_NAME).exists():
        return "no results store was written"
    with ResultsStore.open_existing(out) as store:
        done = {arm: store.last_round(arm) for arm in cfg.federated_arms}
    return ", ".join(
        f"{a}: {n} of {cfg.federation.rounds} rounds"
        for a, n in done.items()
        if n < cfg.federation.rounds
    )


def cmd_deploy(cfg: RunConfig, args: argparse.Namespace) -> int:
    """``fl-sim deploy``: holds the out dir's run lock throughout, like ``fl-sim run``."""
    from fl_sim.ops.outlock import run_lock

    preflight(cfg)
    with run_lock(cfg.results.out, "fl-sim deploy"):
        return _deploy_locked(cfg, args)


def _deploy_locked(cfg: RunConfig, args: argparse.Namespace) -> int:
    from fl_sim.evaluation.judge import ensure_judge
    from fl_sim.federation.server_app import prepare_out_dir
    from fl_sim.ops.deploy import DeployOptions, deploy

    out = prepare_out_dir(cfg.results)  # fail fast, before any process starts
    ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)  # not while the federation waits
    preload_data(cfg)
    print(f"fl-sim deploy: {plan_line(cfg, 'SuperNodes')}; results in {out}", flush=True)
    options = DeployOptions(
        netns=args.netns, tls=args.tls, workdir=args.workdir, keep_temp=args.keep_temp,
        verbose=args.verbose,
    )  # fmt: skip
    deploy(cfg.flower_run(), options)
    return check_results(out, cfg)


def cmd_submit(cfg: RunConfig, args: argparse.Namespace) -> int:
    from fl_sim.ops.deploy import submit
    from fl_sim.ops.tempdirs import temp_dir
    from fl_sim.ops.watchdog import watching

    with watching(), temp_dir("fl-sim-submit-", "the flwr run log", print) as work:
        result = submit(
            cfg.flower_run(), args.superlink, args.root_certificates, work, wait_s=args.wait,
            verbose=args.verbose,
        )  # fmt: skip
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


def cmd_compose_file(args: argparse.Namespace) -> int:
    """``fl-sim compose-file``: the --set items are checked as config keys first."""
    from fl_sim.config import parse_overrides
    from fl_sim.ops.compose import compose_file, tls_override

    RunConfig.from_mapping(parse_overrides(args.overrides))  # bad keys or values: exit 2
    make = tls_override if args.tls else compose_file
    text = make(args.clients, args.out, list(args.overrides))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"fl-sim: wrote {args.output} ({args.clients} SuperNodes)")
    return 0
