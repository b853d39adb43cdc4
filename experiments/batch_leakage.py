"""Leakage where federations train (issue 29): batches of 1-64, E local SGD steps, ANN vs SNN.

One cell is (victim, batch size B, local steps E, state). Its captures are what a client
sends: a batch of B training digits drawn as a client draws them from its IID partition
(labels repeat; ``--distinct`` draws B different labels instead, the literature's setting),
FedSGD's gradient for E = 1 and FedAvg's weights after E SGD steps on that batch (``local_epochs
= E`` over one mini-batch, lr = the config's ``lr``) for E > 1, on the victim ``untrained`` (the
federation's seeded initial model) or ``trained`` (that model after ``--train-steps`` central
SGD steps on mean gradients of 20 training digits at the config's lr, a stand-in for a
federation at a round where it has learnt; its test accuracy is reported). Each capture is
attacked by every attack of ``--attacks`` (default, :func:`default_attacks`: ``rates``, and
``idlg`` on the ANN's FedSGD gradients; on batches: labels and per-sample
classifier inputs from the decomposition of :mod:`attacks.components.batch_leak`),
reconstructions are paired with the batch's digits by minimum total MSE (Hungarian), and
scored per digit.

Cells are committed to ``OUT/trials.sqlite`` as they finish (``--resume`` runs the missing
ones), then ``OUT/batch_leakage.csv`` (per cell and attack: n, SSIM and judge ASR with 95%
CIs, label accuracy, victim test accuracy, seconds), ``OUT/batch_leakage.png`` and
``OUT/batch_leakage.md``. The last lines, one per cell (best: highest mean SSIM, ties by ASR):
``victim=<v> B=<b> E=<e> state=<s> best=<attack> ssim=<mean> asr=<percent>
label_acc=<0..1> n=<images>`` (one line).

    python -m experiments.batch_leakage --victims snn-if-T4 --batch-sizes 4 --local-steps 1 \\
        --states untrained --samples 32 --out results/batch
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from attacks import ATTACKS, Capture
from experiments.attacker_strength import Victim, parse_list, parse_victim, valid_victims
from experiments.batch_report import cell_records, final_line, write_outputs
from experiments.cells import Job, identity_of, run_experiment
from experiments.parsing import OneLineErrorParser
from experiments.trials import add_common_args, trial_outcomes
from fl_sim.data.loaders.base import time_major
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import ensure_judge, split_accuracy
from fl_sim.evaluation.leakage import Target
from fl_sim.federation.client_app import client_update
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import dataset_split, private_batch, public_info
from fl_sim.federation.warm_start import initial_model
from fl_sim.ops.ray_tasks import RaySettings

DEFAULT_VICTIMS = ("ann", "snn-if-T4", "snn-lif-T4", "snn-if-T16")
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_STEPS = (1, 5)
STATES = ("untrained", "trained")
DEFAULT_ATTACKS = ("rates", "idlg")
TRAIN_BATCH = 20  # digits per central step of a trained victim (training.toml's 20 clients)
MAX_BATCH = 256


def parse_ints(text: str | None, default: Sequence[int], name: str, top: int) -> tuple[int, ...]:
    """A comma list of integers in 1..``top`` (None: ``default``); ValueError naming the bad one."""
    values = []
    for item in parse_list(text, [str(d) for d in default]):
        if not item.isdigit() or not 1 <= int(item) <= top:
            raise ValueError(f"{name}: {item!r} is not an integer in 1..{top}")
        values.append(int(item))
    if not values:
        raise ValueError(f"{name}: none given")
    return tuple(values)


def default_attacks(victim: Victim, steps: int) -> tuple[str, ...]:
    """The attacks of a cell without ``--attacks``: ``rates`` everywhere, ``idlg`` beside it
    on the ANN's FedSGD gradients. Left out (docs/explanation/batches.md, measured): iDLG on
    the SNN twins, SSIM <= 0.05 at every cell measured at 2-13x the rate attack's cost, and
    iDLG on FedAvg updates, whose unrolled L-BFGS costs ~100 s per capture of 2 digits."""
    return DEFAULT_ATTACKS if victim.arm == "ann" and steps == 1 else DEFAULT_ATTACKS[:1]


def cell_name(victim: str, batch: int, steps: int, state: str) -> str:
    return f"{victim}/B{batch}/E{steps}/{state}"


def cell_config(cfg: RunConfig, victim: Victim, batch: int, steps: int) -> RunConfig:
    """``cfg`` federating ``victim`` with batches of ``batch``: FedSGD for one step, FedAvg's
    weights after ``steps`` local SGD steps on the batch otherwise."""
    cfg = victim.config(cfg)
    if steps == 1:
        return cfg.replace(batch_size=batch, protocol="fedsgd")
    return cfg.replace(
        batch_size=batch, protocol="fedavg", local_steps=1, local_epochs=steps,
        fedavg_update="weights",
    )  # fmt: skip


def victim_path(out: Path, victim: str, state: str) -> Path:
    return out / "victims" / f"{victim}-{state}.pt"


def prepare_victim(cfg: RunConfig, victim: Victim, state: str, steps: int, out: Path) -> float:
    """Build (or reuse) the victim's weights in ``OUT/victims``; returns its test accuracy."""
    path = victim_path(out, victim.name, state)
    vcfg = victim.config(cfg)
    model = initial_model(vcfg.federation, vcfg.data, victim.arm)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        if state == "trained":
            train_centrally(model, vcfg, steps)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return split_accuracy(model, dataset_split(cfg.data, "test"))


def train_centrally(model: torch.nn.Module, cfg: RunConfig, steps: int) -> None:
    """``steps`` SGD steps (lr: the config's) on the mean gradient of ``TRAIN_BATCH`` seeded
    random training digits each."""
    data = dataset_split(cfg.data, "train")
    gen = torch.Generator().manual_seed(cfg.federation.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.federation.lr)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(data), (TRAIN_BATCH,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(time_major(data.take(index))), data.labels[index]).backward()
        opt.step()
    model.eval()


def distinct_batch(cfg: RunConfig, batch: int, capture: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` training digits of different labels, seeded by the capture's index."""
    data = dataset_split(cfg.data, "train")
    gen = torch.Generator().manual_seed(cfg.federation.seed * 7_919 + capture)
    chosen: dict[int, int] = {}
    for i in torch.randperm(len(data), generator=gen).tolist():
        chosen.setdefault(int(data.labels[i]), i)
        if len(chosen) == batch:
            break
    index = torch.tensor(list(chosen.values()))
    return data.take(index), data.labels[index]


def attack_cell(
    cfg: RunConfig, victim: Victim, batch: int, steps: int, state: str, captures: int,
    distinct: bool, out: str,
) -> list[dict[str, object]]:  # fmt: skip
    """The rows of one cell: ``captures`` client updates of ``batch`` digits, every attack."""
    torch.set_num_threads(1)
    vcfg = cell_config(cfg, victim, batch, steps)
    fed = vcfg.federation
    name = cell_name(victim.name, batch, steps, state)
    state_dict = torch.load(victim_path(Path(out), victim.name, state), weights_only=True)
    public = public_info(fed, vcfg.data, victim.arm)
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
    targets = []
    for k in range(captures):
        if distinct:
            images, labels = distinct_batch(vcfg, batch, k)
        else:  # client k % clients of a federation, its batch of round 1 + k // clients
            images, labels = private_batch(
                fed, vcfg.data, k % fed.clients, fed.clients, 1 + k // fed.clients
            )
        model = initial_model(fed, vcfg.data, victim.arm)
        model.load_state_dict(state_dict)
        update = client_update(fed, model, time_major(images), labels)
        capture = Capture(0, k, update, state_dict, public)
        targets.append(Target(name, capture, GroundTruth(images, labels)))
    outcomes = trial_outcomes(targets, vcfg, judge)
    return [row for outcome in outcomes for row in outcome.rows]


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.batch_leakage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--victims", help=f"comma list of {valid_victims()} (default: "
                        f"{','.join(DEFAULT_VICTIMS)})")  # fmt: skip
    parser.add_argument("--batch-sizes", help=f"comma list (default: {DEFAULT_BATCHES})")
    parser.add_argument("--local-steps", help=f"comma list of E (default: {DEFAULT_STEPS})")
    parser.add_argument("--states", help=f"comma list of {', '.join(STATES)} (default: both)")
    parser.add_argument("--samples", type=int, default=32, help="images per cell (n)")
    parser.add_argument("--attacks", help="comma list for every cell (default: rates, and "
                        "idlg on the ANN at E = 1)")  # fmt: skip
    parser.add_argument("--distinct", action="store_true", help="batches of distinct labels")
    parser.add_argument("--train-steps", type=int, default=1000, help="central SGD steps")
    add_common_args(parser, "results/batch_leakage")
    args = parser.parse_args(argv)
    try:
        cfg = RunConfig.load(overrides=args.overrides)
        victims = [parse_victim(v) for v in parse_list(args.victims, DEFAULT_VICTIMS)]
        batches = parse_ints(args.batch_sizes, DEFAULT_BATCHES, "--batch-sizes", MAX_BATCH)
        steps = parse_ints(args.local_steps, DEFAULT_STEPS, "--local-steps", 100)
        states = parse_list(args.states, STATES)
        chosen = None if args.attacks is None else parse_list(args.attacks, [])
    except ValueError as err:
        parser.error(str(err))
    if not victims:
        parser.error(f"--victims: none given; valid: {valid_victims()}")
    if bad := [s for s in states if s not in STATES] or (not states and ["(none)"]):
        parser.error(f"--states: unknown {', '.join(bad)}; valid: {', '.join(STATES)}")
    if chosen is not None and (bad := [a for a in chosen if a not in ATTACKS] or
                               (not chosen and ["(none)"])):  # fmt: skip
        parser.error(f"--attacks: unknown {', '.join(bad)}; valid: {', '.join(ATTACKS)}")
    cell_attacks = {
        (v.name, e): tuple(chosen) if chosen else default_attacks(v, e)
        for v in victims for e in steps
    }  # fmt: skip
    attacks = list(dict.fromkeys(a for names in cell_attacks.values() for a in names))
    if cfg.data.kind != "image":
        parser.error(f"dataset {cfg.data.dataset!r}: this experiment takes image data")
    if args.distinct and max(batches) > (classes := dataset_split(cfg.data, "train").num_classes):
        parser.error(f"--distinct: a batch of distinct labels has at most {classes} digits")
    if args.samples < 1 or args.train_steps < 1 or args.workers < 1:
        parser.error("--samples, --train-steps and --workers must be >= 1")
    try:
        configs = {key: cfg.replace(attacks=names) for key, names in cell_attacks.items()}
        for victim in victims:
            for b in batches:
                for e in steps:
                    cell_config(configs[(victim.name, e)], victim, b, e)  # each cell validates
    except ValueError as err:
        parser.error(str(err))
    out: Path = args.out
    began = time.perf_counter()
    ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    accuracy = {}
    for victim in victims:
        for state in states:
            accuracy[(victim.name, state)] = prepare_victim(
                cfg, victim, state, args.train_steps, out
            )
            print(f"victim {victim.name} {state}: test accuracy "
                  f"{100 * accuracy[(victim.name, state)]:.1f}%", flush=True)  # fmt: skip
    cells = [(v, b, e, s) for s in states for v in victims for b in batches for e in steps]
    jobs = [
        Job(cell_name(v.name, b, e, s), 0,
            (configs[(v.name, e)], v, b, e, s, math.ceil(args.samples / b), args.distinct,
             str(out)))
        for v, b, e, s in cells
    ]  # fmt: skip
    identity = identity_of(
        "batch_leakage", cfg, samples=args.samples, distinct=args.distinct,
        train_steps=args.train_steps,
        attacks={f"{v}/E{e}": list(names) for (v, e), names in cell_attacks.items()},
    )  # fmt: skip
    rows, _ = run_experiment(parser, args, identity, attack_cell, jobs, RaySettings.of(cfg.runtime))
    classes = dataset_split(cfg.data, "train").num_classes
    records = cell_records(rows, [(v.name, b, e, s) for v, b, e, s in cells], attacks, accuracy)
    command = " ".join(
        ["python -m experiments.batch_leakage", *(sys.argv[1:] if argv is None else argv)]
    )
    write_outputs(out, records, command, classes, cfg, time.perf_counter() - began, args.distinct)
    for line in final_line(records):
        print(line)


if __name__ == "__main__":
    main()
