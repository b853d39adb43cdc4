"""The tables and grids of ``experiments.attacker_strength``: per victim and attack, n, means
and 95% CIs of judge ASR, label accuracy, SSIM, MSE and l2 (``strength.csv``, ``strength.md``),
the best attack per victim, and ``grid_<victim>.png``."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fl_sim.results.report import cell_number, save_grid
from fl_sim.results.schema import ATTACK_FAILED, SCORE_FAILED
from fl_sim.results.stats import METRIC_BOUNDS, t_interval, wilson_interval

Row = Mapping[str, object]
Images = dict[str, dict[str, np.ndarray]]  # victim -> attack -> [C,H,W]

STRENGTH_COLUMNS = (
    "victim", "attack", "n", "failed",
    "asr_pct", "asr_lo", "asr_hi", "label_acc_pct", "label_acc_lo", "label_acc_hi",
    "ssim_mean", "ssim_lo", "ssim_hi", "mse_mean", "mse_lo", "mse_hi",
    "l2_mean", "l2_lo", "l2_hi", "chance_pct", "judge_test_acc_pct",
)  # fmt: skip


def strength_rows(
    rows: Sequence[Row],
    victims: Sequence[str],
    attacks: Sequence[str],
    num_classes: int,
    judge_accuracy: float,
) -> list[dict[str, object]]:
    """One record per (victim, attack), in the given orders, of the leakage rows whose
    ``arm`` is the victim: n rows (failed ones count in n and as not leaked), ASR and label
    accuracy in % with a Wilson 95% interval, SSIM, MSE and l2 means over the scored rows
    with a Student-t 95% interval cut to the metric's range, the chance level
    100/num_classes and the judge's test accuracy in %."""
    out = []
    for victim in victims:
        for attack in attacks:
            grp = [r for r in rows if r["arm"] == victim and r["attack"] == attack]
            n = len(grp)
            rec: dict[str, object] = {"victim": victim, "attack": attack, "n": n}
            rec["failed"] = sum(r["status"] in (ATTACK_FAILED, SCORE_FAILED) for r in grp)
            for key, column in (("asr", "judge_correct"), ("label_acc", "label_correct")):
                hits = sum(cell_number(r[column]) == 1 for r in grp)
                lo, hi = wilson_interval(hits, n)
                rec[f"{key}_pct"] = 100.0 * hits / n if n else math.nan
                rec[f"{key}_lo"], rec[f"{key}_hi"] = 100.0 * lo, 100.0 * hi
            for metric, bounds in METRIC_BOUNDS.items():
                mean, lo, hi = t_interval([cell_number(r[metric]) for r in grp], bounds=bounds)
                rec[f"{metric}_mean"], rec[f"{metric}_lo"], rec[f"{metric}_hi"] = mean, lo, hi
            rec["chance_pct"] = 100.0 / num_classes
            rec["judge_test_acc_pct"] = 100.0 * judge_accuracy
            out.append(rec)
    return out


def best_attack(records: Sequence[Mapping[str, object]], victim: str) -> Mapping[str, object]:
    """The victim's record with the highest mean SSIM (nan lowest), ties by ASR."""

    def key(rec: Mapping[str, object]) -> tuple[float, float]:
        ssim, asr = cell_number(rec["ssim_mean"]), cell_number(rec["asr_pct"])
        return (-math.inf if math.isnan(ssim) else ssim, -math.inf if math.isnan(asr) else asr)

    return max((r for r in records if r["victim"] == victim), key=key)


def best_line(rec: Mapping[str, object]) -> str:
    """``<victim> best=<attack> ssim=<mean> asr=<percent>%``."""
    return (
        f"{rec['victim']} best={rec['attack']} ssim={cell_number(rec['ssim_mean']):.3f} "
        f"asr={cell_number(rec['asr_pct']):.1f}%"
    )


def write_strength_csv(path: Path, records: Sequence[Mapping[str, object]]) -> None:
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(STRENGTH_COLUMNS)
        for rec in records:
            writer.writerow(
                [
                    format(v, ".6g") if isinstance(v, float) else v
                    for v in map(rec.get, STRENGTH_COLUMNS)
                ]
            )


def _ci(rec: Mapping[str, object], key: str, spec: str, mean_key: str | None = None) -> str:
    """``mean [lo, hi]`` of a record; '-' for missing numbers."""

    def f(v: object) -> str:
        x = cell_number(v)
        return "-" if math.isnan(x) else format(x, spec)

    return f"{f(rec[mean_key or f'{key}_mean'])} [{f(rec[f'{key}_lo'])}, {f(rec[f'{key}_hi'])}]"


def strength_markdown(
    records: Sequence[Mapping[str, object]],
    victims: Sequence[str],
    header: Sequence[str],
    chance_pct: float,
) -> str:
    """The table of ``records`` under ``header`` lines, then the best attack per victim."""
    cols = (
        "victim", "attack", "n", "failed", f"judge ASR % (chance {chance_pct:.1f}%)",
        "label acc %", "SSIM", "MSE", "l2",
    )  # fmt: skip
    lines = [*header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in records:
        cells = (
            str(rec["victim"]), str(rec["attack"]), str(rec["n"]), str(rec["failed"]),
            _ci(rec, "asr", ".1f", "asr_pct"), _ci(rec, "label_acc", ".1f", "label_acc_pct"),
            _ci(rec, "ssim", ".3f"), _ci(rec, "mse", ".4f"), _ci(rec, "l2", ".2f"),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Best attack per victim (highest mean SSIM, ties by ASR):", ""]
    lines += [f"- `{best_line(best_attack(records, v))}`" for v in victims]
    return "\n".join(lines) + "\n"


def write_grids(
    out: Path,
    truth: np.ndarray,
    captions: Sequence[str],
    images: Sequence[Images],
    victims: Sequence[str],
    attacks: Sequence[str],
) -> list[Path]:
    """``grid_<victim>.png`` per victim: ground truth, then one row per attack."""
    paths = []
    for victim in victims:
        recons = {a: np.stack([digit[victim][a] for digit in images]) for a in attacks}
        path = out / f"grid_{victim}.png"
        save_grid(path, truth, recons, captions, f"{victim}: first {len(captions)} digits")
        paths.append(path)
    return paths
