"""The tables, figure and last lines of ``experiments.batch_leakage``: per cell and attack,
SSIM (Student-t) and judge ASR (Wilson) with 95% CIs over the cell's images, and the label
accuracy of the batch's label multiset."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from fl_sim.atomic_file import atomic_write
from fl_sim.results.report import cell_number
from fl_sim.results.stats import METRIC_BOUNDS, t_interval, wilson_interval

Record = dict[str, object]
Cell = tuple[str, int, int, str]  # victim, B, E, state
COLUMNS = (
    "victim", "B", "E", "state", "attack", "n", "ssim_mean", "ssim_lo", "ssim_hi", "asr_pct",
    "asr_lo", "asr_hi", "label_acc", "failed", "victim_accuracy_pct", "seconds_per_capture",
)  # fmt: skip


def label_accuracy(rows: Sequence[Mapping[str, object]]) -> float:
    """Share of the batch labels recovered as a multiset, over the captures of ``rows``
    (one attack, one cell): sum over captures of |true & recovered| / images."""
    by_capture: dict[object, list[Mapping[str, object]]] = {}
    for row in rows:
        by_capture.setdefault(row["client"], []).append(row)
    hits = 0
    for group in by_capture.values():
        truth = Counter(row["label_true"] for row in group)
        found = Counter(row["label_pred"] for row in group if row["label_pred"] is not None)
        hits += sum((truth & found).values())
    return hits / len(rows) if rows else math.nan


def cell_records(
    rows: Sequence[Mapping[str, object]],
    cells: Sequence[Cell],
    attacks: Sequence[str],
    accuracy: Mapping[tuple[str, str], float],
) -> list[Record]:
    """One record per (cell, attack) with rows; rows' ``arm`` is the cell's name."""
    by_key: dict[tuple[object, object], list[Mapping[str, object]]] = {}
    for row in rows:
        by_key.setdefault((row["arm"], row["attack"]), []).append(row)
    records = []
    for victim, b, e, state in cells:
        for attack in attacks:
            got = by_key.get((f"{victim}/B{b}/E{e}/{state}", attack), [])
            if not got:
                continue
            ssim = [cell_number(r["ssim"]) for r in got]
            mean, lo, hi = t_interval(ssim, bounds=METRIC_BOUNDS["ssim"])
            hits = sum(cell_number(r["judge_correct"]) == 1 for r in got)
            a_lo, a_hi = wilson_interval(hits, len(got))
            captures = {r["client"]: cell_number(r["seconds"]) for r in got}
            records.append({
                "victim": victim, "B": b, "E": e, "state": state, "attack": attack,
                "n": len(got), "ssim_mean": mean, "ssim_lo": lo, "ssim_hi": hi,
                "asr_pct": 100 * hits / len(got), "asr_lo": 100 * a_lo, "asr_hi": 100 * a_hi,
                "label_acc": label_accuracy(got),
                "failed": sum(r["status"] not in ("ok", "converged") for r in got),
                "victim_accuracy_pct": 100 * accuracy.get((victim, state), math.nan),
                "seconds_per_capture": sum(captures.values()) / len(captures),
            })  # fmt: skip
    return records


def best_records(records: Sequence[Record]) -> list[Record]:
    """Per cell, the attack with the highest mean SSIM (nan lowest), ties by ASR."""
    best: dict[tuple[object, ...], Record] = {}
    for rec in records:
        key = (rec["victim"], rec["B"], rec["E"], rec["state"])

        def rank(r: Record) -> tuple[float, float]:
            s = cell_number(r["ssim_mean"])
            return (-math.inf if math.isnan(s) else s, cell_number(r["asr_pct"]))

        if key not in best or rank(rec) > rank(best[key]):
            best[key] = rec
    return list(best.values())


def final_line(records: Sequence[Record]) -> list[str]:
    """The issue's last line per cell."""
    return [
        f"victim={r['victim']} B={r['B']} E={r['E']} state={r['state']} best={r['attack']} "
        f"ssim={cell_number(r['ssim_mean']):.3f} asr={cell_number(r['asr_pct']):.1f} "
        f"label_acc={cell_number(r['label_acc']):.3f} n={r['n']}"
        for r in best_records(records)
    ]


def _fmt(value: object, spec: str) -> str:
    number = cell_number(value)
    return "-" if math.isnan(number) else format(number, spec)


def markdown(records: Sequence[Record], header: Sequence[str]) -> str:
    lines = [*header, "", "| victim | B | E | state | attack | n | SSIM [95% CI] | ASR % [95% CI] "
             "| label acc | victim acc % | s/capture |", "|" + "---|" * 11]  # fmt: skip
    for r in records:
        lines.append(
            f"| {r['victim']} | {r['B']} | {r['E']} | {r['state']} | {r['attack']} | {r['n']} | "
            f"{_fmt(r['ssim_mean'], '.3f')} [{_fmt(r['ssim_lo'], '.3f')}, "
            f"{_fmt(r['ssim_hi'], '.3f')}] | {_fmt(r['asr_pct'], '.1f')} "
            f"[{_fmt(r['asr_lo'], '.1f')}, {_fmt(r['asr_hi'], '.1f')}] | "
            f"{_fmt(r['label_acc'], '.3f')} | {_fmt(r['victim_accuracy_pct'], '.1f')} | "
            f"{_fmt(r['seconds_per_capture'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def best_table(records: Sequence[Record]) -> str:
    """Per E, one row per victim and state, one column per B: the best attack's
    ``attack SSIM / ASR % / label acc`` ("-" where the cell has no record)."""
    best = best_records(records)
    by_cell = {(r["victim"], r["state"], r["B"], r["E"]): r for r in best}
    batches = sorted({int(r["B"]) for r in best})  # type: ignore[call-overload]
    rows = list(dict.fromkeys((r["victim"], r["state"]) for r in best))
    out = []
    for e in sorted({int(r["E"]) for r in best}):  # type: ignore[call-overload]
        out += ["", f"Best attack per cell, E = {e}: attack SSIM / ASR % / label acc", "",
                "| victim | state | " + " | ".join(f"B = {b}" for b in batches) + " |",
                "|" + "---|" * (2 + len(batches))]  # fmt: skip
        for victim, state in rows:
            cells = []
            for b in batches:
                r = by_cell.get((victim, state, b, e))
                cells.append("-" if r is None else (
                    f"{r['attack']} {_fmt(r['ssim_mean'], '.3f')} / "
                    f"{_fmt(r['asr_pct'], '.1f')} / {_fmt(r['label_acc'], '.2f')}"
                ))  # fmt: skip
            out.append(f"| {victim} | {state} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(path: Path, records: Sequence[Record], chance: float) -> None:
    """Best SSIM and ASR against B (log scale), one panel column per state, one line per
    victim and E (E = 1 solid), 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_records(records)
    states = list(dict.fromkeys(str(r["state"]) for r in best))
    fig, axes = plt.subplots(2, len(states), figsize=(5.5 * len(states), 7), squeeze=False)
    for col, state in enumerate(states):
        lines = sorted({(str(r["victim"]), int(r["E"])) for r in best if r["state"] == state})  # type: ignore[call-overload]
        for victim, e in lines:
            pts = sorted(
                (r for r in best if (r["state"], r["victim"], r["E"]) == (state, victim, e)),
                key=lambda r: int(r["B"]),  # type: ignore[call-overload]
            )
            xs = [int(r["B"]) for r in pts]  # type: ignore[call-overload]
            style = "-" if e == 1 else "--"
            for row, (key, lo, hi) in enumerate(
                (("ssim_mean", "ssim_lo", "ssim_hi"), ("asr_pct", "asr_lo", "asr_hi"))
            ):
                ys = [cell_number(r[key]) for r in pts]
                err = [
                    [max(0.0, y - cell_number(r[lo])) if not math.isnan(cell_number(r[lo])) else 0.0
                     for y, r in zip(ys, pts, strict=True)],
                    [max(0.0, cell_number(r[hi]) - y) if not math.isnan(cell_number(r[hi])) else 0.0
                     for y, r in zip(ys, pts, strict=True)],
                ]  # fmt: skip
                axes[row][col].errorbar(
                    xs, ys, yerr=err, fmt=style + "o", capsize=3, label=f"{victim} E={e}"
                )
        for row, label in enumerate(("best SSIM", "judge ASR %")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size B")
            ax.set_ylabel(label)
            ax.set_title(f"{state} victims")
            ax.grid(alpha=0.3)
        axes[1][col].axhline(chance, color="grey", linestyle=":", label="chance")
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def write_outputs(
    out: Path, records: Sequence[Record], command: str, classes: int, cfg: object,
    seconds: float, distinct: bool,
) -> None:  # fmt: skip
    """``batch_leakage.csv``, ``.md`` and ``.png`` in ``out``."""
    with atomic_write(out / "batch_leakage.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    chance = 100.0 / classes
    header = [
        "# Leakage at batch size B and E local steps",
        "",
        f"`{command}` ({seconds / 60:.1f} min)",
        "",
        "- Batches: " + ("B digits of distinct labels" if distinct else
                         "drawn as a client draws them from its IID partition (labels repeat)")
        + "; E = 1: FedSGD gradient, E > 1: FedAvg weights after E SGD steps on the batch.",
        "- Reconstructions paired with the batch's digits by minimum total MSE (Hungarian); "
        "SSIM per digit after pairing, Student-t 95% CI over the n digits; ASR = judge "
        f"accuracy on the paired reconstructions, Wilson 95% CI; chance level 1/{classes} = "
        f"{chance:.1f}%. Label acc: share of the batch's label multiset recovered.",
        "- Victim acc: the victim's test accuracy (trained: central SGD, see the module).",
    ]  # fmt: skip
    with atomic_write(out / "batch_leakage.md", "w") as fh:
        fh.write(markdown(records, header) + best_table(records))
    if records:
        plot(out / "batch_leakage.png", records, chance)
