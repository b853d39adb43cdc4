"""Per-round leakage results: durable CSV appends, image grids, round plots and a text summary."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from fl_sim.atomic_file import atomic_write

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fl_sim.results.schema import LEAKAGE, LEAKAGE_COLUMNS, check_columns  # noqa: E402
from fl_sim.results.stats import METRIC_BOUNDS, t_interval, wilson_interval  # noqa: E402

__all__ = [
    "LEAKAGE_COLUMNS",
    "append_rows",
    "plot_rounds",
    "read_rows",
    "rounds_figure",
    "save_grid",
    "summary_table",
    "write_report",
    "write_rows",
]

Row = Mapping[str, object]


# --------------------------------------------------------------------------- CSV


def _cells(row: Row) -> list[str]:
    """A leakage row's CSV cells in column order."""
    return [c.to_csv(row[c.name]) for c in LEAKAGE]


def append_rows(path: Path, rows: Sequence[Row]) -> None:
    """Append rows to the leakage CSV and fsync, so a killed run keeps its finished rounds.

    The header is written when the file is new or empty; all rows are validated before
    anything is written. Raises ValueError on missing/unknown keys or a foreign header.
    """
    path = Path(path)
    for i, row in enumerate(rows):
        check_columns(row, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if tuple(header) != LEAKAGE_COLUMNS:
            raise ValueError(f"{path} has header {header}, expected {list(LEAKAGE_COLUMNS)}")
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(LEAKAGE_COLUMNS)
        for row in rows:
            writer.writerow(_cells(row))
        fh.flush()
        os.fsync(fh.fileno())


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Replace the leakage CSV with exactly ``rows`` via a temp file, fsync and rename, so a
    reader never sees a half-written file (used to export the results store)."""
    path = Path(path)
    for i, row in enumerate(rows):
        check_columns(row, i)
    with atomic_write(path, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(LEAKAGE_COLUMNS)
        for row in rows:
            writer.writerow(_cells(row))


def read_rows(path: Path) -> list[dict[str, object]]:
    """Read the leakage CSV back with ints, floats (``inf``/``nan`` included) and strings."""
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        return [{c.name: c.from_csv(rec.get(c.name) or "") for c in LEAKAGE} for rec in reader]


# --------------------------------------------------------------------------- images


def _to_display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """[C, H, W] in [0, 1] -> (imshow array, colormap); gray for C=1, RGB for C=3.
    Event frames [T, 2, H, W] show as their spike rate per pixel (both polarities, over T),
    scaled to the sample's maximum."""
    arr = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if arr.ndim == 4:
        rate = arr.mean(axis=(0, 1))
        return rate / rate.max() if rate.max() > 0 else rate, "gray"
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"expected an image [C, H, W] with C in (1, 3), got {arr.shape}")
    if arr.shape[0] == 1:
        return arr[0], "gray"
    return np.transpose(arr, (1, 2, 0)), None


def save_grid(
    path: Path,
    truth: np.ndarray,
    recons: Mapping[str, np.ndarray],
    captions: Sequence[str],
    title: str,
) -> None:
    """One PNG: ground truth on the first row, one row per attack, one column per sample
    (images [N,C,H,W] or event frames [N,T,C,H,W])."""
    truth = np.asarray(truth)
    if truth.ndim not in (4, 5):
        raise ValueError(f"truth must be [N, C, H, W] or [N, T, C, H, W], got {truth.shape}")
    n = truth.shape[0]
    if len(captions) != n:
        raise ValueError(f"{len(captions)} captions for {n} samples")
    for name, rec in recons.items():
        if np.shape(rec) != truth.shape:
            raise ValueError(
                f"recon '{name}' shape {np.shape(rec)} does not match truth {truth.shape}"
            )
    rows = [("truth", truth)] + [(name, np.asarray(rec)) for name, rec in recons.items()]
    fig, axes = plt.subplots(
        len(rows),
        max(n, 1),
        figsize=(1.6 * max(n, 1) + 0.8, 1.7 * len(rows) + 0.5),
        squeeze=False,
    )
    try:
        for r, (label, batch) in enumerate(rows):
            for c in range(n):
                ax = axes[r][c]
                img, cmap = _to_display(batch[c])
                ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_xlabel(captions[c], fontsize=8)
                if c == 0:
                    ax.set_ylabel(label, fontsize=9)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- aggregation


def cell_number(value: object) -> float:
    """Float of a cell (bools/ints/strings too); None, '' and junk become nan."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _nanmean(values: Iterable[float]) -> float:
    """Mean over non-nan values; nan when there are none."""
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _pct(rows: Sequence[Row], column: str) -> float:
    """Percentage of ``rows`` whose ``column`` is 1 / True (nan for no rows)."""
    if not rows:
        return math.nan
    return 100.0 * sum(cell_number(r[column]) == 1 for r in rows) / len(rows)


def by_arm_attack(rows: Iterable[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows grouped by (arm, attack), keys sorted."""
    out: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        out.setdefault((str(row["arm"]), str(row["attack"])), []).append(row)
    return dict(sorted(out.items()))


# per arm: (round, global test accuracy) pairs, e.g. from ResultsStore.rounds()
Accuracy = Mapping[str, Sequence[tuple[int, float]]]


def round_stats(rows: Sequence[Row]) -> dict[str, float]:
    """n, ASR % with its Wilson 95% interval, mean SSIM with its t interval, label accuracy %
    of one group of rows (failed attacks count as not leaked)."""
    n = len(rows)
    hits = sum(cell_number(r["judge_correct"]) == 1 for r in rows)
    lo, hi = wilson_interval(hits, n)
    ssim, ssim_lo, ssim_hi = t_interval(
        [cell_number(r["ssim"]) for r in rows], bounds=METRIC_BOUNDS["ssim"]
    )
    return {
        "n": n, "asr": 100.0 * hits / n if n else math.nan, "asr_lo": 100.0 * lo,
        "asr_hi": 100.0 * hi, "ssim": ssim, "ssim_lo": ssim_lo, "ssim_hi": ssim_hi,
        "label_acc": _pct(rows, "label_correct"),
    }  # fmt: skip


def by_round(rows: Iterable[Row]) -> dict[tuple[str, str], dict[int, dict[str, float]]]:
    """:func:`round_stats` per (arm, attack) and round."""
    out: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for key, grp in by_arm_attack(rows).items():
        rounds: dict[int, list[Row]] = {}
        for row in grp:
            rounds.setdefault(int(cell_number(row["round"])), []).append(row)
        out[key] = {r: round_stats(rounds[r]) for r in sorted(rounds)}
    return out


def errorbar(ax: Any, xs: list[int], stats: list[dict[str, float]], key: str, **kw: Any) -> Any:
    mean = np.array([s[key] for s in stats])
    # float rounding can put a bound a hair inside the mean (e.g. Wilson's at 100%)
    lo = np.clip(np.nan_to_num(mean - np.array([s[f"{key}_lo"] for s in stats])), 0, None)
    hi = np.clip(np.nan_to_num(np.array([s[f"{key}_hi"] for s in stats]) - mean), 0, None)
    return ax.errorbar(xs, mean, yerr=[lo, hi], capsize=3, **kw)


# per series label (e.g. "ann / dlg"): {round: round_stats(...)}, as by_round gives per key
SeriesStats = Mapping[str, Mapping[int, Mapping[str, float]]]


def rounds_figure(
    series: SeriesStats,
    chance: float | Sequence[float] | None = None,
    accuracy: Accuracy | None = None,
) -> Figure:
    """The figure of :func:`plot_rounds` from per-round stats keyed by series label (the
    caller closes it); ``chance`` may list several levels (runs of different datasets)."""
    chances = [] if chance is None else [chance] if isinstance(chance, int | float) else chance
    fig, axes = plt.subplots(1, 3 if accuracy else 2, figsize=(5.5 * (3 if accuracy else 2), 4.2))
    try:
        _draw_rounds(axes, series, sorted(set(chances)), accuracy)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _draw_rounds(
    axes: Any, series: SeriesStats, chances: list[float], accuracy: Accuracy | None
) -> None:
    """The panels of :func:`rounds_figure`: ASR, SSIM and (with ``accuracy``) test accuracy."""
    ax_asr, ax_ssim = axes[0], axes[1]
    for name, per_round in series.items():
        xs, st = list(per_round), [dict(s) for s in per_round.values()]
        ns = sorted({int(s["n"]) for s in st})
        n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
        label = f"{name} ({n_text} per round)"
        errorbar(ax_asr, xs, st, "asr", marker="o", label=label)
        errorbar(ax_ssim, xs, st, "ssim", marker="s", label=label)
    for level in chances:
        ax_asr.axhline(100 * level, color="grey", ls="--", lw=1, label=f"chance {level:.0%}")
    ax_asr.set_title("Attack success rate (judge), 95% Wilson CI")
    ax_asr.set_ylabel("ASR (%)")
    ax_asr.set_ylim(-5, 105)
    ax_ssim.set_title("Reconstruction SSIM, mean and 95% t CI")
    ax_ssim.set_ylabel("mean SSIM")
    if accuracy:
        ax_acc = axes[2]
        for arm, points in sorted(accuracy.items()):
            ax_acc.plot([p[0] for p in points], [100 * p[1] for p in points], label=arm)
        for level in chances:
            name = "chance" if len(chances) == 1 else f"chance {level:.0%}"
            ax_acc.axhline(100 * level, color="grey", ls="--", lw=1, label=name)
        ax_acc.set_title("Global model test accuracy")
        ax_acc.set_ylabel("accuracy (%)")
        ax_acc.set_ylim(-5, 105)
    for ax in axes:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if series or ax is not ax_asr and ax is not ax_ssim:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)


def plot_rounds(
    rows: Iterable[Row], path: Path, chance: float | None = None, accuracy: Accuracy | None = None
) -> None:
    """One PNG: judge ASR % and mean SSIM per round, one line per (arm, attack), with 95%
    intervals (Wilson; t), n per point and the judge's chance level; with ``accuracy``, a
    third panel of each arm's global test accuracy per round."""
    series = {f"{arm} / {attack}": st for (arm, attack), st in by_round(rows).items()}
    fig = rounds_figure(series, chance, accuracy)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


_SUMMARY_HEADER = (
    "arm",
    "attack",
    "n",
    "ASR %",
    "label acc %",
    "MSE (mean)",
    "PSNR (median)",
    "SSIM (mean)",
    "SSIM>0.9 %",
    "l2 (mean)",
)


def _fmt(value: float, spec: str) -> str:
    """Format a statistic; nan (no data) prints as '-'."""
    return "-" if math.isnan(value) else format(value, spec)


def summary_table(rows: Iterable[Row]) -> str:
    """Fixed-width text table, one line per (arm, attack).

    ASR, label accuracy and SSIM>0.9 are % of all rows in the group; MSE/SSIM means and the
    PSNR median (robust to inf) skip empty/nan cells. '-' marks a statistic with no data.
    Rows of a failed attack or scoring (status ``attack-failed``/``score-failed``, empty
    metrics) count in n and as not leaked.
    """
    lines: list[tuple[str, ...]] = [_SUMMARY_HEADER]
    for (arm, attack), grp in by_arm_attack(rows).items():
        n = len(grp)
        ssim = [cell_number(r["ssim"]) for r in grp]
        psnr = [v for v in (cell_number(r["psnr"]) for r in grp) if not math.isnan(v)]
        lines.append(
            (
                arm,
                attack,
                str(n),
                _fmt(_pct(grp, "judge_correct"), ".1f"),
                _fmt(_pct(grp, "label_correct"), ".1f"),
                _fmt(_nanmean(cell_number(r["mse"]) for r in grp), ".4g"),
                _fmt(float(np.median(psnr)) if psnr else math.nan, ".2f"),
                _fmt(_nanmean(ssim), ".4f"),
                _fmt(100.0 * sum(v > 0.9 for v in ssim) / n, ".1f"),
                _fmt(_nanmean(cell_number(r["l2"]) for r in grp), ".2f"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(_SUMMARY_HEADER))]

    def render(cells: Sequence[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    out = [render(lines[0]), "  ".join("-" * w for w in widths)]
    out += [render(line) for line in lines[1:]]
    if len(lines) == 1:
        out.append("(no rows)")
    return "\n".join(out)


def write_report(
    out_dir: Path,
    rows: Iterable[Row],
    chance: float | None = None,
    accuracy: Accuracy | None = None,
    setting: str = "",
) -> str:
    """Write ``leakage_per_round.png`` (see :func:`plot_rounds`) and ``summary.txt`` into
    ``out_dir``; return the summary (``setting``, e.g. the batch size, on a line above it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    plot_rounds(rows, out_dir / "leakage_per_round.png", chance, accuracy)
    text = (setting + "\n" if setting else "") + summary_table(rows)
    (out_dir / "summary.txt").write_text(text + "\n")
    return text
