"""One ``fl-sim run`` setting over several seeds: how far the draw of digits and initial
weights, and float32 chaos in the attacks, move its leakage table.

Runs ``fl-sim run`` once per seed into ``OUT/seed-S`` (the main job unless ``--config`` /
``--set`` say otherwise; a finished seed is reused, an interrupted one resumed), then writes
``OUT/seed_spread.csv`` and ``OUT/seed_spread.md``: per arm and attack, each seed's ASR % and
mean SSIM with their range over seeds, and the pooled n, ASR % with its 95% Wilson interval
and mean SSIM with its 95% t interval (rows of different seeds pooled as independent
captures). The last lines, one per (arm, attack):
``<arm> <attack> asr=<pooled>% [<lo>, <hi>] range=<min>-<max> ssim=<pooled> range=<min>-<max>``.

    python -m experiments.seed_spread --seeds 0,1,2,3,4 --out results/seed_spread
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from experiments.parsing import OneLineErrorParser
from experiments.runs import run_or_reuse
from fl_sim.results.report import by_arm_attack, round_stats
from fl_sim.results.store import ResultsStore

COLUMNS = (
    "arm", "attack", "seeds", "n", "asr_pct", "asr_lo", "asr_hi", "asr_min", "asr_max",
    "ssim_mean", "ssim_lo", "ssim_hi", "ssim_min", "ssim_max", "asr_per_seed", "ssim_per_seed",
)  # fmt: skip


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: a comma-separated list of integers") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: at least one seed, each once")
    return seeds


def run_seed(out: Path, seed: int, config: Path | None, overrides: list[str]) -> None:
    """``fl-sim run`` with this seed into ``out`` (reused if finished, resumed if not)."""
    args = ["--set", f"seed={seed}", *(["--config", str(config)] if config else [])]
    args += [a for kv in overrides for a in ("--set", kv)]
    run_or_reuse(out, args, f"seed_spread: seed {seed}")


def spread(per_seed: dict[int, list[dict[str, object]]]) -> list[dict[str, object]]:
    """One table row per (arm, attack): per-seed and pooled statistics."""
    pooled = by_arm_attack(row for rows in per_seed.values() for row in rows)
    table = []
    for (arm, attack), rows in pooled.items():
        stats = round_stats(rows)
        seeds = {
            seed: round_stats([r for r in seed_rows if (r["arm"], r["attack"]) == (arm, attack)])
            for seed, seed_rows in per_seed.items()
        }
        asr = [s["asr"] for s in seeds.values()]
        ssim = [s["ssim"] for s in seeds.values()]
        table.append(
            {
                "arm": arm, "attack": attack, "seeds": len(seeds), "n": stats["n"],
                "asr_pct": stats["asr"], "asr_lo": stats["asr_lo"], "asr_hi": stats["asr_hi"],
                "asr_min": min(asr), "asr_max": max(asr),
                "ssim_mean": stats["ssim"], "ssim_lo": stats["ssim_lo"],
                "ssim_hi": stats["ssim_hi"], "ssim_min": min(ssim), "ssim_max": max(ssim),
                "asr_per_seed": " ".join(f"{a:.1f}" for a in asr),
                "ssim_per_seed": " ".join(f"{v:.3f}" for v in ssim),
            }
        )  # fmt: skip
    return table


def write_tables(out: Path, table: list[dict[str, object]], command: str, seeds: list[int]) -> None:
    with (out / "seed_spread.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    lines = [
        f"`{command}` (seeds {', '.join(map(str, seeds))}). Pooled: mean [95% CI] over every "
        "seed's rows (ASR: Wilson; SSIM: t); range: min-max of the per-seed values.",
        "",
        "| arm | attack | n | ASR % pooled | ASR % per seed | SSIM pooled | SSIM per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['arm']} | {r['attack']} | {r['n']} | {r['asr_pct']:.1f} "
            f"[{r['asr_lo']:.1f}, {r['asr_hi']:.1f}] | {r['asr_per_seed']} | "
            f"{r['ssim_mean']:.3f} [{r['ssim_lo']:.3f}, {r['ssim_hi']:.3f}] | "
            f"{r['ssim_per_seed']} |"
        )
    (out / "seed_spread.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrorParser(
        prog="python -m experiments.seed_spread", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated (default 0-4)")
    parser.add_argument("--out", type=Path, default=Path("results/seed_spread"))
    parser.add_argument("--config", type=Path, help="fl-sim run config (default: the main job)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        parser.error(str(err))
    if any(kv.partition("=")[0].strip() in {"seed", "out", "resume"} for kv in args.overrides):
        parser.error("--set seed/out/resume: chosen per seed by this experiment")
    command = " ".join(
        ["python -m experiments.seed_spread", *(sys.argv[1:] if argv is None else argv)]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    per_seed = {}
    for seed in seeds:
        run = args.out / f"seed-{seed}"
        run_seed(run, seed, args.config, args.overrides)
        with ResultsStore.open_existing(run) as store:
            per_seed[seed] = store.reconstruction_rows()
    table = spread(per_seed)
    write_tables(args.out, table, command, seeds)
    print(f"seed_spread: wrote {args.out / 'seed_spread.csv'} and seed_spread.md")
    for r in table:
        print(
            f"{r['arm']} {r['attack']} asr={r['asr_pct']:.1f}% [{r['asr_lo']:.1f}, "
            f"{r['asr_hi']:.1f}] range={r['asr_min']:.1f}-{r['asr_max']:.1f} "
            f"ssim={r['ssim_mean']:.3f} range={r['ssim_min']:.3f}-{r['ssim_max']:.3f}"
        )


if __name__ == "__main__":
    main()
