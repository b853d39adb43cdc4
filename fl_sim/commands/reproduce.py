"""``fl-sim reproduce NAME``: the paper's tables and figures (experiments/paper)."""

from __future__ import annotations

import argparse

NAMES = ("table4", "table5", "table6", "fig5")  # experiments.paper.REPRODUCTIONS, without torch


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "reproduce",
        help="regenerate one of the paper's tables or figures (table4, table5, table6, fig5)",
        description="Runs the paper's protocol (its attacks and dummy handling, each sample on "
        "a freshly initialised victim) on the datasets available here, stores every trial in "
        "OUT/reproduce.sqlite as it finishes (--resume continues), and writes the table with "
        "the published values, our 95%% CIs and n, and a flag where the published value lies "
        "outside our interval (OUT/NAME.md, .csv, .reproduction.json, report.html).",
    )
    p.add_argument("name", choices=NAMES)
    p.add_argument("--samples", type=int, default=100, help="samples per cell (default: 100)")
    p.add_argument(
        "--datasets", metavar="A,B",
        help="comma list (default: the paper's, those not available here reported and left out)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--resume", action="store_true", help="continue the reproduction in --out")
    p.add_argument("--out", default="results/reproduce", help="default: results/reproduce")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a config key on top of the paper's protocol (e.g. iterations=50), noted in the table",
    )  # fmt: skip


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments.paper.reproduce import reproduce
    from fl_sim.ops import watchdog
    from fl_sim.ops.ray_tasks import shutdown_own_ray

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    if args.datasets is not None and not datasets:
        raise ValueError(f"--datasets {args.datasets!r} names no dataset")
    # the local Ray the workers run on is this process's; the watchdog ends it if we die
    with watchdog.watching():
        reproduce(
            args.name,
            Path(args.out),
            datasets,
            samples=args.samples,
            workers=args.workers,
            resume=args.resume,
            overrides=args.overrides,
            log=lambda text: print(text, flush=True),
        )
        shutdown_own_ray()  # so that the watchdog's normal end finds no Ray left to end
    return 0
