"""Privacy-utility frontier: each defence at several strengths, on the ANN and the SNN arm of
the same federation, as final test accuracy against leakage (judge ASR, SSIM, 95% CIs).

Every setting is one ``fl-sim run`` of the training config (issue 12: FedSGD, 20 iid
clients, one private digit each per round, lr 0.15) into ``OUT/<defence>-<strength>``; a
finished setting is reused, an interrupted one resumed. The default, reduced sweep is sized
for about 30 minutes on a 2-core CPU: both arms first train ``--warm-rounds`` undefended
rounds once (``OUT/warm``), then every setting continues from that warm start for
``--rounds`` defended rounds and is attacked (idlg and rates, ``--budget`` captures) in its
last round; its accuracy is the test accuracy after those rounds (measured: 38 minutes in
all on the 2-core CPU). DP's epsilon covers the defended rounds only: the warm-up was not
private. ``--full`` runs every setting from
the seeded init for the config's 1,000 rounds, attacked as the config says (about 50
minutes per setting here).

Writes ``OUT/privacy_utility.csv`` (every arm, setting and attack), ``.md`` and ``.png``;
its last lines, one per (arm, defence, strength), give the strongest attack's leakage:
``<arm> <defence> <strength> acc=<a> asr=<b>% [lo, hi] ssim=<c> [lo, hi] (<attack>, n=<n>)``.

    python -m experiments.privacy_utility --out results/privacy_utility
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.leakage_over_training import DEFAULT_CONFIG, accuracy_by_round, fmt  # noqa: E402
from experiments.parsing import OneLineErrorParser  # noqa: E402
from experiments.runs import run_or_reuse  # noqa: E402
from fl_sim.results.report import by_arm_attack, errorbar, round_stats  # noqa: E402
from fl_sim.results.store import ResultsStore  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: a defence at one strength and the run keys that set it."""

    defence: str  # none, dp, prune, quant, secagg
    strength: str  # what varies, as it reads in the last lines
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        if self.strength == "-":
            return self.defence
        return f"{self.defence}-{self.strength}".replace("=", "")


def dp(noise: float, clip: float = 1.0) -> Setting:
    return Setting("dp", f"noise={noise:g}", (f"transforms=dp:clip={clip:g}:noise={noise:g}",))


def prune(keep: float) -> Setting:
    return Setting("prune", f"keep={keep:g}", (f"transforms=prune:keep={keep:g}",))


NONE = Setting("none", "-", ())
SECAGG = Setting("secagg", "secaggplus", ("secagg=secaggplus",))
REDUCED = (NONE, dp(0.01), dp(0.1), dp(1.0), prune(0.3), prune(0.1), prune(0.01), SECAGG)
FULL = (
    NONE, *(dp(z) for z in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
    *(prune(k) for k in (0.5, 0.3, 0.1, 0.03, 0.01)),
    *(Setting("quant", f"bits={b}", (f"transforms=quant:bits={b}",)) for b in (8, 4, 1)),
    SECAGG,
)  # fmt: skip

COLUMNS = (
    "arm", "defence", "strength", "attack", "acc", "n", "asr_pct", "asr_lo", "asr_hi",
    "ssim_mean", "ssim_lo", "ssim_hi", "epsilon", "run",
)  # fmt: skip
# keys this experiment sets per setting (a --set of one of them would be overwritten)
OWN_KEYS = {"out", "resume", "transforms", "secagg", "init_checkpoint", "seed"}


def sweep_args(
    setting: Setting, config: Path, overrides: Sequence[str], reduced: Mapping[str, str]
) -> list[str]:
    """``fl-sim run`` options of one setting: config, the user's --set, the reduced sweep's
    keys, then the setting's own."""
    sets = [*overrides, *(f"{k}={v}" for k, v in reduced.items()), *setting.overrides]
    return ["--config", str(config), *(a for kv in sets for a in ("--set", kv))]


def records(setting: Setting, run: Path) -> list[dict[str, object]]:
    """One record per (arm, attack) of a finished setting's run: final test accuracy, the
    leakage pooled over its attacked rounds, DP's epsilon if any."""
    import json

    with ResultsStore.open_existing(run) as store:
        rows = store.reconstruction_rows()
        accuracy = accuracy_by_round(store)
    privacy = json.loads((run / "run.json").read_text()).get("privacy") or []
    epsilon = privacy[0]["epsilon"] if privacy else math.nan
    out = []
    for (arm, attack), group in sorted(by_arm_attack(rows).items()):
        st = round_stats(group)
        acc = accuracy.get(arm, {})
        out.append(
            {
                "arm": arm, "defence": setting.defence, "strength": setting.strength,
                "attack": attack, "acc": acc[max(acc)] if acc else math.nan, "n": int(st["n"]),
                "asr_pct": st["asr"], "asr_lo": st["asr_lo"], "asr_hi": st["asr_hi"],
                "ssim_mean": st["ssim"], "ssim_lo": st["ssim_lo"], "ssim_hi": st["ssim_hi"],
                "epsilon": epsilon, "run": run.name,
            }
        )  # fmt: skip
    return out


def leakage(record: Mapping[str, object]) -> tuple[float, float]:
    """What ranks attacks: ASR, then SSIM."""
    return float(record["asr_pct"]), float(record["ssim_mean"])  # type: ignore[arg-type]


def strongest(recs: Sequence[Mapping[str, object]]) -> dict[tuple[str, str, str], Mapping]:
    """Per (arm, defence, strength), the attack with the highest ASR (then SSIM)."""
    best: dict[tuple[str, str, str], Mapping[str, object]] = {}
    for r in recs:
        key = (str(r["arm"]), str(r["defence"]), str(r["strength"]))
        if key not in best or leakage(r) > leakage(best[key]):
            best[key] = r
    return best


def with_ci(record: Mapping[str, object], stat: str, spec: str) -> str:
    """``mean [lo, hi]`` of ``stat`` (asr or ssim) in a record."""
    mean = STAT_COLUMNS[stat]
    return (
        f"{fmt(record[mean], spec)} [{fmt(record[f'{stat}_lo'], spec)}, "
        f"{fmt(record[f'{stat}_hi'], spec)}]"
    )


def markdown(recs: Sequence[Mapping[str, object]], header: Sequence[str]) -> str:
    lines = [
        "# Privacy-utility frontier", "", *header, "",
        "| arm | defence | strength | epsilon | test acc % | attack | n | judge ASR % [95% CI] "
        "| SSIM [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in recs:
        lines.append(
            f"| {r['arm']} | {r['defence']} | {r['strength']} | {fmt(r['epsilon'], '.3g')} | "
            f"{fmt(100 * float(r['acc']), '.1f')} | {r['attack']} | {r['n']} | "  # type: ignore[arg-type]
            f"{with_ci(r, 'asr', '.1f')} | {with_ci(r, 'ssim', '.3f')} |"
        )
    return "\n".join(lines) + "\n"


# errorbar()'s stats keys -> this experiment's columns
STAT_COLUMNS = {
    "asr": "asr_pct", "asr_lo": "asr_lo", "asr_hi": "asr_hi",
    "ssim": "ssim_mean", "ssim_lo": "ssim_lo", "ssim_hi": "ssim_hi",
}  # fmt: skip
MARKERS = {"none": "*", "dp": "o", "prune": "s", "quant": "^", "secagg": "D"}


def plot(
    path: Path, best: Mapping[tuple[str, str, str], Mapping[str, object]], chance: float
) -> None:
    """Test accuracy against the strongest attack's ASR and SSIM (95% CIs), per arm (colour)
    and defence (marker), each point labelled with its strength."""
    fig, (ax_asr, ax_ssim) = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = {"ann": "tab:blue", "snn": "tab:orange"}
    try:
        for (arm, defence, strength), r in sorted(best.items()):
            acc = 100 * float(r["acc"])  # type: ignore[arg-type]
            stats = [{k: float(r[c]) for k, c in STAT_COLUMNS.items()}]  # type: ignore[arg-type]
            for ax, key in ((ax_asr, "asr"), (ax_ssim, "ssim")):
                bar = errorbar(ax, [acc], stats, key, ls="none", color=colours.get(arm),
                               marker=MARKERS.get(defence, "x"), ms=7)  # fmt: skip
                bar.set_label(f"{arm} {defence}")
                ax.annotate(strength if defence != "none" else "none", (acc, stats[0][key]),
                            fontsize=7, xytext=(4, 3), textcoords="offset points")  # fmt: skip
        ax_asr.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance {chance:.0%}")
        ax_asr.set(ylabel="judge ASR of the strongest attack (%)", ylim=(-5, 105))
        ax_ssim.set(ylabel="mean SSIM of that attack")
        for ax in (ax_asr, ax_ssim):
            ax.set_xlabel("final test accuracy (%)")
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles, strict=True))
            ax.legend(unique.values(), unique.keys(), fontsize=7)
        fig.suptitle("Privacy-utility frontier (95% CIs: Wilson for ASR, t for SSIM)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def last_lines(best: Mapping[tuple[str, str, str], Mapping[str, object]]) -> list[str]:
    return [
        f"{arm} {defence} {strength} acc={fmt(r['acc'], '.3f')} "
        f"asr={with_ci(r, 'asr', '.1f').replace(' ', '% ', 1)} ssim={with_ci(r, 'ssim', '.3f')} "
        f"({r['attack']}, n={r['n']})"
        for (arm, defence, strength), r in best.items()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.privacy_utility", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("results/privacy_utility"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--full", action="store_true", help="every strength, from scratch")
    parser.add_argument("--warm-rounds", type=int, default=150, help="reduced: undefended rounds")
    parser.add_argument("--rounds", type=int, default=20, help="reduced: defended rounds")
    parser.add_argument("--budget", type=int, default=5, help="reduced: captures attacked")
    parser.add_argument("--only", default="", help="comma list of defences to run (e.g. dp,none)")
    args = parser.parse_args(argv)
    if min(args.warm_rounds, args.rounds, args.budget) < 1:
        parser.error("--warm-rounds, --rounds and --budget must be >= 1")
    own = sorted({kv.partition("=")[0].strip() for kv in args.overrides} & OWN_KEYS)
    if own:
        parser.error(f"--set {', '.join(own)}: chosen per setting by this experiment")
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    settings = FULL if args.full else REDUCED
    if args.only:
        wanted = {d.strip() for d in args.only.split(",") if d.strip()}
        known = {s.defence for s in settings}
        if not wanted <= known:
            parser.error(f"--only {args.only!r}: defences are {', '.join(sorted(known))}")
        settings = tuple(s for s in settings if s.defence in wanted)
    command = " ".join(
        ["python -m experiments.privacy_utility", *(sys.argv[1:] if argv is None else argv)]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reduced: dict[str, str] = {}
    if not args.full:
        warm = args.out / "warm"
        warm_args = sweep_args(NONE, args.config, args.overrides, {})
        warm_args += ["--set", f"rounds={args.warm_rounds}", "--set", "attacks="]
        warm_args += ["--set", "attack_rounds=all"]
        run_or_reuse(warm, warm_args, f"privacy_utility: warm start ({args.warm_rounds} rounds)")
        reduced = {
            "init_checkpoint": str((warm / "final_model_{arm}.pt").resolve()),
            "rounds": str(args.rounds), "attack_rounds": "last",
            "attack_budget": str(args.budget),
        }  # fmt: skip
    recs: list[dict[str, object]] = []
    for i, setting in enumerate(settings, 1):
        run = args.out / setting.name
        label = f"privacy_utility: [{i}/{len(settings)}] {setting.defence} {setting.strength}"
        run_or_reuse(run, sweep_args(setting, args.config, args.overrides, reduced), label)
        recs += records(setting, run)
        print(f"{label}: done, {time.perf_counter() - start:.0f}s elapsed", flush=True)
    write_outputs(args.out, recs, command, args, reduced)


def write_outputs(
    out: Path,
    recs: list[dict[str, object]],
    command: str,
    args: argparse.Namespace,
    reduced: Mapping[str, str],
) -> None:
    """The CSV, markdown table and plot of every setting's records; prints the last lines."""
    from fl_sim.federation.run_config import RunConfig
    from fl_sim.federation.task import dataset_split

    with open(out / "privacy_utility.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(recs)
    with ResultsStore.open_existing(out / str(recs[0]["run"])) as store:
        judge = store.runs()[-1]
        chance = (
            1.0 / dataset_split(RunConfig.from_mapping(store.run_config()).data, "test").num_classes
        )
    mode = (
        f"reduced sweep: warm start of {args.warm_rounds} undefended rounds (`OUT/warm`), then "
        f"{args.rounds} defended rounds per setting, {args.budget} captures of the last "
        "round attacked; epsilon covers the defended rounds only"
        if reduced
        else "full sweep: every setting from the seeded init, the config's rounds"
    )
    header = [
        f"`{command}`",
        "",
        f"- {mode}.",
        f"- Judge {judge.get('judge_arch')} (test accuracy "
        f"{100 * float(judge.get('judge_accuracy') or math.nan):.1f}%), chance "
        f"{100 * chance:.0f}%. ASR: "
        "Wilson 95% interval; SSIM: t 95% interval; n = captures attacked per attack.",
    ]
    (out / "privacy_utility.md").write_text(markdown(recs, header))
    best = strongest(recs)
    plot(out / "privacy_utility.png", best, chance)
    print(f"privacy_utility: wrote {out / 'privacy_utility.csv'}, .md and .png")
    for line in last_lines(best):
        print(line)


if __name__ == "__main__":
    main()
