"""Attacker strength (issue 11): every attack on the same digits, on the ANN and its SNN twins.

Paper Experiment 1's setting (as ``experiments.untrained_leakage``): each of N training
digits is attacked on its own freshly initialised victim, seeded by the digit's index so
every victim of one digit starts from the same weights, through the FedSGD gradient of a
batch of 1. Every attack (default: each in ``attacks.ATTACKS`` but ``grnn`` and the chains,
taken from the registry at run time) runs on every victim (default: the ANN ``lenet`` and its
SNN twin with IF neurons at T = 4, 8, 16 and LIF neurons at T = 4; on event data, e.g. ``--set
dataset=nmnist-emulated``, the SNN with each neuron at T = ``frames``), with the budgets of
the run config (``iterations``, ``grnn_iterations``, ``rates_iterations``, ...).

Each cell (one victim, one digit, every attack) is committed to ``OUT/trials.sqlite`` as it
finishes, with a progress line (``experiments.cells``); ``--resume`` on the same OUT runs only
the missing cells. Then writes into OUT: ``leakage.csv`` (one row per digit, victim and
attack; the victim's name is the ``arm`` column, e.g. ``snn-if-T8``),
``strength.csv`` and ``strength.md`` (per victim and attack: n, mean and 95% CI of judge ASR,
label accuracy, SSIM, MSE and l2; the judge's chance level and test accuracy),
``grid_<victim>.png`` (ground truth and one row per attack, first 10 digits) and
``summary.txt``. The last lines on stdout, one per victim:
``<victim> best=<attack> ssim=<mean> asr=<percent>%`` (best: highest mean SSIM, ties by ASR).

    python -m experiments.attacker_strength --samples 30 --out results/strength
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attacks import ATTACKS
from attacks.registry import CHAINS
from experiments.cells import (
    Job,
    identity_of,
    load_images,
    open_store,
    run_cells,
    stored_rows,
)
from experiments.parsing import OneLineErrorParser
from experiments.strength_report import (
    Images,
    best_attack,
    best_line,
    strength_markdown,
    strength_rows,
    write_grids,
    write_strength_csv,
)
from experiments.trials import add_common_args, fresh_capture, trial_outcomes
from fl_sim.atomic_file import atomic_write
from fl_sim.config import parse_overrides
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import Judge, ensure_judge
from fl_sim.evaluation.leakage import Target
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split
from fl_sim.ops.ray_tasks import RaySettings
from fl_sim.results.report import (
    write_report,
    write_rows,
)
from models.surrogate import NEURONS

DEFAULT_VICTIMS = ("ann", "snn-if-T4", "snn-if-T8", "snn-if-T16", "snn-lif-T4")
# only when asked: grnn (its own LeNet-5, 1,000 iterations) and the chains (rates-ig,
# rates-idlg: measured worse than rates alone on the IF twin, docs/explanation/results.md)
EXCLUDED_BY_DEFAULT = ("grnn", *CHAINS)
GRID_DIGITS = 10
_VICTIM = re.compile(r"snn-(?P<neuron>[a-z]+)-T(?P<T>[1-9][0-9]*)")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Victim:
    """A victim of the experiment: ``ann``, or the SNN twin with ``neuron`` and ``T`` steps."""

    name: str
    arm: str  # "ann" or "snn" (the victim family's arm)
    neuron: str | None = None
    T: int | None = None

    def config(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` federating this victim only, with its neuron and T (ANN: cfg's, unused)."""
        if self.arm == "ann":
            return cfg.replace(arms=("ann",))
        return cfg.replace(arms=("snn",), neuron=self.neuron, T=self.T)


def valid_victims() -> str:
    """The victim names accepted, in words."""
    return "ann, " + ", ".join(f"snn-{n}-T<steps>" for n in sorted(NEURONS))


def parse_victim(name: str) -> Victim:
    """``ann`` or ``snn-<neuron>-T<steps>`` (e.g. ``snn-lif-T8``); ValueError otherwise."""
    if name == "ann":
        return Victim("ann", "ann")
    match = _VICTIM.fullmatch(name)
    if match is None or match["neuron"] not in NEURONS:
        raise ValueError(f"unknown victim {name!r}; valid: {valid_victims()}")
    return Victim(name, "snn", match["neuron"], int(match["T"]))


def event_victims(frames: int) -> tuple[str, ...]:
    """The default victims on event data: each SNN neuron, T = the frames."""
    return tuple(f"snn-{neuron}-T{frames}" for neuron in sorted(NEURONS))


def default_attacks() -> tuple[str, ...]:
    """Every registered attack but those excluded by default (grnn), in registry order."""
    return tuple(name for name in ATTACKS if name not in EXCLUDED_BY_DEFAULT)


def parse_list(text: str | None, default: Sequence[str]) -> tuple[str, ...]:
    """A comma list (None: ``default``), without blanks and repeats, in the given order."""
    if text is None:
        return tuple(default)
    return tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


# --------------------------------------------------------------------------- one digit


def attack_cell(
    cfg: RunConfig, victim: Victim, index: int, keep_images: bool
) -> tuple[list[dict[str, object]], dict[str, np.ndarray] | None]:
    """One cell: every attack of ``cfg.attack.attacks`` on training digit ``index`` against
    ``victim``, freshly initialised from the digit's seed: the leakage rows and, if
    ``keep_images``, the reconstructions by attack matched to the digit (NaN where an attack
    or its scoring failed)."""
    torch.set_num_threads(1)
    data = dataset_split(cfg.data, "train")
    truth = GroundTruth(data.take(slice(index, index + 1)), data.labels[index : index + 1])
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
    vcfg = victim.config(cfg)
    capture = fresh_capture(vcfg, victim.arm, index, truth)
    outcomes = trial_outcomes([Target(victim.name, capture, truth)], vcfg, judge)
    rows = [row for outcome in outcomes for row in outcome.rows]
    images = {o.attack: np.asarray(o.images)[0] for o in outcomes} if keep_images else None
    return rows, images


def grid_images(
    out: Path, indices: Sequence[int], victims: Sequence[str]
) -> tuple[list[int], list[Images]]:
    """The stored reconstructions of the digits ``indices`` that every victim has."""
    shown, images = [], []
    for index in indices:
        found = {v: load_images(out, v, index) for v in victims}
        if all(found.values()):
            shown.append(index)
            images.append({v: dict(f) for v, f in found.items() if f is not None})
    return shown, images


# --------------------------------------------------------------------------- main


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def _budgets(cfg: RunConfig) -> str:
    """The run config's attack budget and attack option keys (whichever exist), key=value."""
    keys = [
        k
        for k in RunConfig.keys()  # noqa: SIM118 (a classmethod)
        if "iterations" in k
        or k.startswith(("rates_", "attack_"))
        or k in ("restarts", "feature_weight")
    ]
    values = cfg.flat()
    return ", ".join(f"{k}={values[k]}" for k in keys)


def _header(
    command: str,
    setting: str,
    cfg: RunConfig,
    judge: Judge,
    num_classes: int,
    grids: Sequence[Path],
) -> list[str]:
    """strength.md's lines above the table: command, setting, budgets, judge, CI methods."""
    return [
        "# Attacker strength",
        "",
        f"`{command}`",
        "",
        f"- Setting: paper Experiment 1, {setting}. Each digit is attacked on its own freshly "
        "initialised victim (seed `seed * 100003 + digit index`: every victim of a digit starts "
        "from the same weights) through the FedSGD gradient of a batch of 1.",
        f"- Attack settings: {_budgets(cfg)}.",
        f"- Judge: {judge.arch} on {judge.dataset}, test accuracy {100 * judge.accuracy:.1f}%; "
        f"chance level 1/{num_classes} = {100 / num_classes:.1f}%. ASR = judge accuracy on the "
        "reconstructions.",
        "- n = digits; each cell is mean [95% CI]. ASR and label accuracy: Wilson score "
        "interval over the n digits, failed attacks counted as not leaked. SSIM, MSE "
        "(reconstruction clipped to [0, 1]) and l2 (unclipped): Student-t interval over the "
        "scored digits (n - failed), cut to the metric's range (SSIM [-1, 1], MSE [0, 1], "
        "l2 >= 0); '-' where fewer than 2.",
        "- Grids (ground truth, then one row per attack): "
        + ", ".join(f"`{p.name}`" for p in grids)
        + ".",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.attacker_strength", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=int, default=30, help="training digits attacked")
    parser.add_argument(
        "--attacks",
        help=f"comma list (default: --set attacks=..., else {','.join(default_attacks())})",
    )
    parser.add_argument(
        "--victims",
        help=f"comma list of {valid_victims()} (default: {','.join(DEFAULT_VICTIMS)}; on event "
        "data each neuron with T = frames); each sets the config's arms, neuron and T",
    )
    add_common_args(parser, "results/attacker_strength")
    args = parser.parse_args(argv)

    try:
        cfg = RunConfig.load(overrides=args.overrides)
        asked = "attacks" in parse_overrides(args.overrides)
    except ValueError as err:
        parser.error(str(err))
    # --attacks, else --set attacks=..., else every registered attack but grnn
    attacks = parse_list(args.attacks, cfg.attack.attacks if asked else default_attacks())
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        parser.error(
            f"unknown attack(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ATTACKS)}"
        )
    try:
        default = DEFAULT_VICTIMS if cfg.data.kind == "image" else event_victims(cfg.data.frames)
        victims = [parse_victim(v) for v in parse_list(args.victims, default)]
    except ValueError as err:
        parser.error(str(err))
    if not victims:
        parser.error(f"no victims given; valid: {valid_victims()}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if cfg.data.kind == "events":
        wrong = [v.name for v in victims if v.arm != "snn" or cfg.data.frames != v.T]
        if wrong:
            events = cfg.data
            parser.error(
                f"victim(s) {', '.join(wrong)}: on event data ({events.dataset}) the victim is the "
                f"SNN and T is the frames ({events.frames}): use snn-<neuron>-T{events.frames}"
            )
    if (
        cfg.federation.protocol != "fedsgd"
        or cfg.federation.batch_size != 1
        or cfg.federation.faults
    ):
        parser.error(
            "Experiment 1's setting is the FedSGD gradient of one digit (defences through "
            "transforms allowed): leave protocol, batch_size and faults at their defaults"
        )
    try:
        cfg = cfg.replace(attacks=attacks)
        for victim in victims:
            victim.config(cfg)  # each victim's settings validate
    except ValueError as err:
        parser.error(str(err))
    data = dataset_split(cfg.data, "train")
    if not 1 <= args.samples <= len(data):
        parser.error(f"--samples must be in 1..{len(data)}, got {args.samples}")
    out: Path = args.out
    names = [v.name for v in victims]
    identity = identity_of(
        "attacker_strength", cfg, samples=args.samples, victims=names, attacks=list(attacks)
    )
    try:
        store = open_store(out, args.resume, identity)
    except (ValueError, OSError) as err:
        parser.error(str(err))

    # the same digits as experiments.untrained_leakage with the same seed
    indices = [
        int(i)
        for i in np.random.default_rng(cfg.federation.seed).choice(
            len(data), args.samples, replace=False
        )
    ]
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    print(
        f"{args.samples} {cfg.data.dataset} digits x {len(victims)} victims ({', '.join(names)}; "
        f"family {cfg.federation.victim}) x {len(attacks)} attacks ({', '.join(attacks)}), "
        f"{args.workers} worker(s); {_budgets(cfg)}",
        flush=True,
    )
    start = time.perf_counter()
    jobs = [
        Job(victim.name, index, (cfg, victim, index, pos < GRID_DIGITS))
        for pos, index in enumerate(indices)
        for victim in victims
    ]  # digit by digit: every victim's first digits come first
    with store:
        failures = run_cells(
            store, attack_cell, jobs, args.workers, RaySettings.of(cfg.runtime), "attacker_strength"
        )
        rows = stored_rows(store, jobs)
        seconds = sum(store.seconds(name) for name in names)
    elapsed = time.perf_counter() - start

    write_rows(out / "leakage.csv", rows)
    write_report(out, rows)
    records = strength_rows(rows, names, attacks, data.num_classes, judge.accuracy)
    write_strength_csv(out / "strength.csv", records)
    shown, images = grid_images(out, indices[:GRID_DIGITS], names)
    truth = data.take(shown).numpy()
    captions = [f"#{i} y={int(data.labels[i])}" for i in shown]
    grids = write_grids(out, truth, captions, images, names, attacks) if shown else []
    command = " ".join(
        ["python -m experiments.attacker_strength", *(sys.argv[1:] if argv is None else argv)]
    )
    setting = (
        f"{args.samples} {cfg.data.dataset} training digits (seed {cfg.federation.seed}), "
        f"victim family `{cfg.federation.victim}`; {_duration(elapsed)} with {args.workers} "
        "worker(s) in this "
        f"invocation, {_duration(seconds)} of worker time over all cells"
    )
    if failures:
        setting += (
            f"; {len(failures)} cells failed and are not in the table (rerun with --resume): "
            + "; ".join(failures[:3])
        )
    header = _header(command, setting, cfg, judge, data.num_classes, grids)
    text = strength_markdown(records, names, header, 100.0 / data.num_classes)
    with atomic_write(out / "strength.md", "w") as fh:
        fh.write(text)
    print(text, end="")
    for name in names:
        print(best_line(best_attack(records, name)))


if __name__ == "__main__":
    main()
