"""Leakage over training (issue 12): ANN and SNN federations that learn, attacked while they
learn, side by side.

Runs ``fl-sim run`` (default config: ``experiments/configs/training.toml``: FedSGD, 20
clients of one digit each per round, 1,000 rounds, idlg and rates on 6 captures of rounds 1,
250, 500, 750, 1000) into OUT, then reads its results store and writes:

- ``over_training.csv``: per arm, attack and attacked round: the global model's test
  accuracy at that round's start (the model the captures were computed at: the previous
  round's result, or the initial model's) and after it, n, ASR
  % with its 95% Wilson interval, mean SSIM with its 95% t interval, label accuracy %;
- ``over_training.md``: the same table with the command, setting, judge and chance level;
- ``over_training.png``: ASR and SSIM per round (CIs, n, chance line), test accuracy per round
  for every round, and ASR against test accuracy (the privacy-utility view).

The last lines, one per arm: ``<arm> final_acc=<a> <attack>=<asr first>%-><asr last>% ...``.
``--from-run DIR`` reports a finished run without running anything. Re-run on the same OUT,
a finished run there is reported again and an interrupted one resumed (``experiments.runs``).

    python -m experiments.leakage_over_training --out results/over_training
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from experiments.parsing import OneLineErrorParser
from fl_sim.federation.run_config import RunConfig  # noqa: E402
from fl_sim.results.report import by_round, errorbar  # noqa: E402
from fl_sim.results.store import DB_NAME, ResultsStore  # noqa: E402

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "training.toml"
COLUMNS = (
    "arm", "attack", "round", "acc_before", "acc_after", "n", "asr_pct", "asr_lo", "asr_hi",
    "ssim_mean", "ssim_lo", "ssim_hi", "label_acc_pct",
)  # fmt: skip


def accuracy_by_round(store: ResultsStore) -> dict[str, dict[int, float]]:
    """Per arm, each committed round's global test accuracy (after the round)."""
    out: dict[str, dict[int, float]] = {}
    for r in store.rounds():
        if r["accuracy"] is not None:
            out.setdefault(str(r["arm"]), {})[int(r["round"])] = float(r["accuracy"])
    return out


def initial_accuracy(cfg: RunConfig) -> dict[str, float]:
    """Per arm, the test accuracy of the model round 1 starts from (the seeded init or the
    warm start, rebuilt exactly as the ServerApp builds it; the store holds rounds >= 1)."""
    from fl_sim.evaluation.judge import split_accuracy
    from fl_sim.federation.server_app import initial_model
    from fl_sim.federation.task import dataset_split

    test = dataset_split(cfg.data, "test")
    return {
        arm: split_accuracy(initial_model(cfg.federation, cfg.data, arm), test)
        for arm in cfg.federated_arms
    }


def table(
    store: ResultsStore, accuracy: Mapping[str, Mapping[int, float]]
) -> list[dict[str, object]]:
    """One record per (arm, attack, attacked round), in :data:`COLUMNS`; ``accuracy``: per
    arm and round (0: the initial model), the global test accuracy after it."""
    records = []
    for (arm, attack), per_round in by_round(store.reconstruction_rows()).items():
        for rnd, st in per_round.items():
            acc = accuracy.get(arm, {})
            records.append(
                {
                    "arm": arm, "attack": attack, "round": rnd,
                    "acc_before": acc.get(rnd - 1, math.nan), "acc_after": acc.get(rnd, math.nan),
                    "n": int(st["n"]), "asr_pct": st["asr"], "asr_lo": st["asr_lo"],
                    "asr_hi": st["asr_hi"], "ssim_mean": st["ssim"], "ssim_lo": st["ssim_lo"],
                    "ssim_hi": st["ssim_hi"], "label_acc_pct": st["label_acc"],
                }
            )  # fmt: skip
    return records


def fmt(value: object, spec: str) -> str:
    """``value`` formatted by ``spec``; "-" for NaN (a cell without data)."""
    number = float(value)  # type: ignore[arg-type]
    return "-" if math.isnan(number) else format(number, spec)


def markdown(records: Sequence[Mapping[str, object]], header: Sequence[str]) -> str:
    lines = [
        "# Leakage over training",
        "",
        *header,
        "",
        "| arm | attack | round | test acc before / after % | n | judge ASR % [95% CI] "
        "| SSIM [95% CI] | label acc % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        before = fmt(100 * float(r["acc_before"]), ".1f")  # type: ignore[arg-type]
        after = fmt(100 * float(r["acc_after"]), ".1f")  # type: ignore[arg-type]
        lines.append(
            f"| {r['arm']} | {r['attack']} | {r['round']} | {before} / {after} | {r['n']} | "
            f"{fmt(r['asr_pct'], '.1f')} [{fmt(r['asr_lo'], '.1f')}, {fmt(r['asr_hi'], '.1f')}] | "
            f"{fmt(r['ssim_mean'], '.3f')} [{fmt(r['ssim_lo'], '.3f')}, {fmt(r['ssim_hi'], '.3f')}]"
            f" | {fmt(r['label_acc_pct'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(
    path: Path,
    records: Sequence[Mapping[str, object]],
    accuracy: Mapping[str, Mapping[int, float]],
    chance: float,
) -> None:
    """2 x 2 panels: ASR and SSIM per attacked round, test accuracy per round, ASR against
    the test accuracy of the model attacked."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_asr, ax_ssim), (ax_acc, ax_pu) = axes
    try:
        groups: dict[tuple[str, str], list[Mapping[str, object]]] = {}
        for r in records:
            groups.setdefault((str(r["arm"]), str(r["attack"])), []).append(r)
        for (arm, attack), recs in sorted(groups.items()):
            xs = [int(r["round"]) for r in recs]  # type: ignore[call-overload]
            stats = [
                {
                    "asr": float(r["asr_pct"]), "asr_lo": float(r["asr_lo"]),  # type: ignore[arg-type]
                    "asr_hi": float(r["asr_hi"]), "ssim": float(r["ssim_mean"]),  # type: ignore[arg-type]
                    "ssim_lo": float(r["ssim_lo"]), "ssim_hi": float(r["ssim_hi"]),  # type: ignore[arg-type]
                }
                for r in recs
            ]  # fmt: skip
            ns = sorted({int(r["n"]) for r in recs})  # type: ignore[call-overload]
            label = f"{arm} / {attack} (n={ns[0]}{'' if len(ns) == 1 else f'-{ns[-1]}'}/round)"
            errorbar(ax_asr, xs, stats, "asr", marker="o", label=label)
            errorbar(ax_ssim, xs, stats, "ssim", marker="s", label=label)
            acc = [100 * float(r["acc_before"]) for r in recs]  # type: ignore[arg-type]
            ax_pu.plot(acc, [s["asr"] for s in stats], marker="o", label=label)
            for a, s, x in zip(acc, stats, xs, strict=True):
                if not math.isnan(a):
                    ax_pu.annotate(f"r{x}", (a, s["asr"]), fontsize=7)
        for arm, per_round in sorted(accuracy.items()):
            rounds = sorted(per_round)
            ax_acc.plot(rounds, [100 * per_round[r] for r in rounds], label=arm)
        for ax in (ax_asr, ax_acc, ax_pu):
            ax.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance {chance:.0%}")
            ax.set_ylim(-5, 105)
        ax_asr.set(title="Judge ASR per attacked round (95% Wilson CI)", ylabel="ASR (%)")
        ax_ssim.set(title="Reconstruction SSIM (mean, 95% t CI)", ylabel="mean SSIM")
        ax_acc.set(title="Global model test accuracy", ylabel="accuracy (%)")
        ax_pu.set(
            title="Leakage vs utility of the attacked model",
            xlabel="test accuracy of the model the captures were computed at (%)",
            ylabel="ASR (%)",
        )
        for ax in (ax_asr, ax_ssim, ax_acc):
            ax.set_xlabel("round")
        for ax in axes.flat:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def final_lines(
    records: Sequence[Mapping[str, object]], accuracy: Mapping[str, Mapping[int, float]]
) -> list[str]:
    """``<arm> final_acc=<a> <attack>=<asr first>%-><asr last>% ...`` per arm."""
    lines = []
    for arm, per_round in sorted(accuracy.items()):
        final = per_round[max(per_round)]
        parts = [f"{arm} final_acc={final:.3f}"]
        attacks: dict[str, list[Mapping[str, object]]] = {}
        for r in records:
            if r["arm"] == arm:
                attacks.setdefault(str(r["attack"]), []).append(r)
        for attack, recs in sorted(attacks.items()):
            first, last = recs[0], recs[-1]
            parts.append(
                f"{attack}={fmt(first['asr_pct'], '.1f')}%->{fmt(last['asr_pct'], '.1f')}%"
                f" (r{first['round']}->r{last['round']})"
            )
        lines.append(" ".join(parts))
    return lines


def report(out: Path, command: str) -> list[str]:
    """Write the table, markdown and plot of the run in ``out``; return the last lines."""
    with ResultsStore.open_existing(out) as store:
        cfg = RunConfig.from_mapping(store.run_config())
        accuracy = accuracy_by_round(store)
        for arm, acc in initial_accuracy(cfg).items():
            accuracy.setdefault(arm, {})[0] = acc
        records = table(store, accuracy)
        judge = store.runs()[-1]
    from fl_sim.federation.task import dataset_split

    chance = 1.0 / dataset_split(cfg.data, "test").num_classes
    with open(out / "over_training.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    fed, att = cfg.federation, cfg.attack
    header = [
        f"`{command}`",
        "",
        f"- Setting: {cfg.data.dataset}, {fed.clients} clients, {fed.protocol} (batch "
        f"{fed.batch_size}, lr {fed.lr}), strategy {fed.strategy}, {fed.rounds} rounds, victim "
        f"{fed.victim} "
        f"(SNN: {fed.neuron}, T={cfg.time_steps}); attacks {', '.join(att.attacks)} on "
        f"{att.attack_budget or 'all'} captures of rounds {att.attack_rounds}.",
        f"- Judge: {judge.get('judge_arch')} on {judge.get('judge_dataset')}, test accuracy "
        f"{100 * float(judge.get('judge_accuracy') or math.nan):.1f}%; chance level "
        f"{100 * chance:.0f}%. ASR: Wilson 95% interval; SSIM: t 95% interval; n per round.",
        "- Test accuracy before: the model the captures were computed at (the previous round's "
        "result; round 0: the initial model); after: the round's result.",
    ]
    (out / "over_training.md").write_text(markdown(records, header))
    plot(out / "over_training.png", records, accuracy, chance)
    return final_lines(records, accuracy)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.leakage_over_training", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("results/over_training"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--from-run", type=Path, help="report this finished run; run nothing")
    args = parser.parse_args(argv)
    command = " ".join(
        ["python -m experiments.leakage_over_training", *(sys.argv[1:] if argv is None else argv)]
    )
    out: Path = args.from_run or args.out
    if args.from_run is None:  # a finished run in OUT is reused, an interrupted one resumed
        from experiments.runs import run_or_reuse

        run_args = ["--config", str(args.config)]
        run_or_reuse(out, [*run_args, *[a for kv in args.overrides for a in ("--set", kv)]],
                     "leakage_over_training")  # fmt: skip
    if not (out / DB_NAME).is_file():
        parser.error(f"{out} holds no {DB_NAME}: nothing to report")
    for line in report(out, command):
        print(line)


if __name__ == "__main__":
    main()
