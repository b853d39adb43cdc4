"""``report.html``: one self-contained page (inline CSS, JS, SVG and base64 images) showing
one run's results store, or comparing several; reproduction tables too."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fl_sim.results.html_kit import (
    Cell,
    esc,
    figure_svg,
    num,
    page,
    stat,
    table,
    whole,
    write_atomic,
)
from fl_sim.results.html_sections import (
    REPRODUCTION_SUFFIX,
    Reproduction,
    faults_section,
    grids_section,
    load_reproductions,
    reproduction_section,
    timings_section,
)
from fl_sim.results.report import (
    by_arm_attack,
    by_round,
    cell_number,
    round_stats,
    rounds_figure,
)
from fl_sim.results.stats import METRIC_BOUNDS, t_interval
from fl_sim.results.store import DB_NAME, ResultsStore

__all__ = ["REPORT_HTML", "RunData", "check_report_dir", "render_report", "write_html_report"]

REPORT_HTML = "report.html"

Row = Mapping[str, object]


@dataclass
class RunData:
    """What the page shows of one out dir: its results store's tables and its reproductions."""

    out_dir: Path
    name: str
    invocations: list[dict[str, object]] = field(default_factory=list)
    rounds: list[dict[str, object]] = field(default_factory=list)
    rows: list[dict[str, object]] = field(default_factory=list)
    grids: list[dict[str, object]] = field(default_factory=list)
    faults: list[dict[str, object]] = field(default_factory=list)
    reproductions: list[Reproduction] = field(default_factory=list)
    has_store: bool = False
    num_classes: int | None = None
    chance_note: str = ""

    @property
    def chance(self) -> float | None:
        return 1.0 / self.num_classes if self.num_classes else None

    @property
    def judge(self) -> dict[str, object]:
        """The latest invocation's judge record."""
        raw = self.invocations[-1].get("judge") if self.invocations else None
        return dict(json.loads(raw) if isinstance(raw, str) else raw or {})

    @property
    def config(self) -> dict[str, object]:
        return dict(self.invocations[-1]["config"]) if self.invocations else {}

    @property
    def arms(self) -> list[str]:
        return sorted({str(r["arm"]) for r in self.rounds})

    @property
    def round_numbers(self) -> list[int]:
        return sorted({whole(r["round"]) for r in self.rounds})

    @property
    def accuracy(self) -> dict[str, list[tuple[int, float]]]:
        """Per arm, (round, global test accuracy)."""
        out: dict[str, list[tuple[int, float]]] = {}
        for r in self.rounds:
            if r["accuracy"] is not None:
                out.setdefault(str(r["arm"]), []).append(
                    (whole(r["round"]), cell_number(r["accuracy"]))
                )
        return out


def check_report_dir(out_dir: Path) -> None:
    """Raise FileNotFoundError unless ``out_dir`` holds a results store or reproduction tables."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        what = "not a directory" if out_dir.exists() else "no such directory"
        raise FileNotFoundError(f"{out_dir}: {what}")
    if not (out_dir / DB_NAME).is_file() and not any(out_dir.glob(f"*{REPRODUCTION_SUFFIX}")):
        raise FileNotFoundError(
            f"{out_dir} holds neither {DB_NAME} nor *{REPRODUCTION_SUFFIX}: nothing to report"
        )


def _num_classes(store: ResultsStore, judge: Mapping[str, object]) -> tuple[int | None, str]:
    """The judge's class count: from its record, else from the stored config's dataset."""
    if judge.get("num_classes"):
        return whole(judge["num_classes"]), ""
    try:
        from fl_sim.data.config import DataConfig
        from fl_sim.data.splits import dataset_split

        stored = store.run_config()
        data = DataConfig.from_mapping({k: stored[k] for k in DataConfig.keys() if k in stored})  # noqa: SIM118
        return dataset_split(data, "test").num_classes, ""
    except Exception as err:  # an old or foreign store: the page says so, no chance line
        return None, f"chance level unknown ({type(err).__name__}: {err})"


def load_run(out_dir: Path, name: str) -> RunData:
    """Everything the page shows of ``out_dir``, read through its results store."""
    out_dir = Path(out_dir)
    check_report_dir(out_dir)
    data = RunData(out_dir, name, reproductions=load_reproductions(out_dir))
    if not (out_dir / DB_NAME).is_file():
        return data
    with ResultsStore.open_existing(out_dir) as store:
        data.has_store = True
        data.invocations = store.runs()
        data.rounds = store.rounds()
        data.rows = store.reconstruction_rows()
        data.grids = store.grids()
        data.faults = store.fault_rows()
        if data.invocations:
            data.num_classes, data.chance_note = _num_classes(store, data.judge)
    return data


# --------------------------------------------------------------------------- cells


def _asr(st: Mapping[str, float]) -> Cell:
    text = f"{num(st['asr'], '.1f')} [{num(st['asr_lo'], '.1f')}, {num(st['asr_hi'], '.1f')}]"
    return Cell(text, st["asr"], "n")


def _mean_ci(mean: float, lo: float, hi: float, spec: str = ".3f") -> Cell:
    ci = "[-]" if math.isnan(lo) else f"[{num(lo, spec)}, {num(hi, spec)}]"
    return Cell(f"{num(mean, spec)} {ci}", mean, "n")


def _summary_row(grp: Sequence[Row]) -> list[object]:
    """n, ASR % [CI], label acc %, SSIM [CI], MSE mean, PSNR median, l2 mean of one group."""
    st = round_stats(grp)
    mse = t_interval([cell_number(r["mse"]) for r in grp], bounds=METRIC_BOUNDS["mse"])[0]
    psnr = [v for v in (cell_number(r["psnr"]) for r in grp) if not math.isnan(v)]
    median = statistics.median(psnr) if psnr else math.nan  # robust to inf (exact copies)
    l2 = t_interval([cell_number(r["l2"]) for r in grp])[0]
    return [
        int(st["n"]), _asr(st), stat(st["label_acc"], ".1f"),
        _mean_ci(st["ssim"], st["ssim_lo"], st["ssim_hi"]), stat(mse, ".4g"),
        stat(median, ".2f"), stat(l2, ".2f"),
    ]  # fmt: skip


SUMMARY_HEADER = [
    "n", "ASR % [95% CI]", "label acc %", "SSIM mean [95% CI]", "MSE mean", "PSNR median",
    "l2 mean",
]  # fmt: skip


def summary_html(runs: Sequence[RunData], ident: str) -> str:
    """One row per (run,) arm, attack; a run column when several runs are compared."""
    several = len(runs) > 1
    body = []
    for run in runs:
        for (arm, attack), grp in by_arm_attack(run.rows).items():
            body.append(([run.name] if several else []) + [arm, attack] + _summary_row(grp))
    head = (["run"] if several else []) + ["arm", "attack"] + SUMMARY_HEADER
    if not body:
        return f'<p id="{ident}" class="muted">no reconstruction rows</p>'
    return table(head, body, id=ident)


def verdict_html(run: RunData, ident: str) -> str:
    """The answer first: per arm, its strongest attack over all rounds (highest ASR, ties by
    mean SSIM) with n and 95% CIs, beside the judge's chance level and the arm's accuracy."""
    acc = {arm: max(points)[1] for arm, points in run.accuracy.items()}  # the last round's
    best: dict[str, tuple[tuple[float, float], str, Sequence[Row]]] = {}
    for (arm, attack), grp in by_arm_attack(run.rows).items():
        st = round_stats(grp)
        key = tuple(-math.inf if math.isnan(v) else v for v in (st["asr"], st["ssim"]))
        if arm not in best or key > best[arm][0]:
            best[arm] = (key, attack, grp)  # type: ignore[assignment]
    if not best:
        return f'<p id="{ident}" class="muted">no reconstruction rows yet</p>'
    body = []
    for arm, (_, attack, grp) in best.items():
        st = round_stats(grp)
        body.append([
            arm, attack, int(st["n"]), _asr(st),
            _mean_ci(st["ssim"], st["ssim_lo"], st["ssim_hi"]),
            stat(100 * acc.get(arm, math.nan), ".1f"),
        ])  # fmt: skip
    chance = "unknown" if run.chance is None else f"{100 * run.chance:.1f}%"
    head = ["arm", "strongest attack", "n", "ASR % [95% CI]", "SSIM mean [95% CI]", "test acc %"]
    return (
        f'<section id="{ident}" class="verdict"><h3>Verdict: leakage per arm</h3>'
        + table(head, body, id=f"{ident}-table")
        + '<p class="muted">Strongest attack of the run on each arm, over every attacked round'
        " (highest ASR, ties by mean SSIM); ASR is the judge's accuracy on "
        f"the reconstructions (Wilson 95% CI), chance level {esc(chance)}; SSIM: t 95% CI; "
        "test accuracy after the last committed round. Every attack and round: below.</p>"
        "</section>"
    )


def per_round_table(run: RunData, ident: str) -> str:
    """One row per (arm, attack, round): n, ASR [CI], SSIM [CI] and the arm's test accuracy."""
    acc = {(str(r["arm"]), whole(r["round"])): cell_number(r["accuracy"]) for r in run.rounds}
    body = [
        [
            arm, attack, rnd, int(st["n"]), _asr(st),
            _mean_ci(st["ssim"], st["ssim_lo"], st["ssim_hi"]),
            stat(100 * acc.get((arm, rnd), math.nan), ".1f"),
        ]
        for (arm, attack), per_round in by_round(run.rows).items()
        for rnd, st in per_round.items()
    ]  # fmt: skip
    if not body:
        return f'<p id="{ident}" class="muted">no reconstruction rows</p>'
    head = ["arm", "attack", "round", "n", "ASR % [95% CI]", "SSIM mean [95% CI]", "test acc %"]
    return table(head, body, id=ident)


# --------------------------------------------------------------------------- figures


def _label(text: str) -> str:
    """Legend text without matplotlib's mathtext ($) surprises."""
    return text.replace("$", r"\$")


def curves(runs: Sequence[RunData], ident: str) -> str:
    """ASR and SSIM per round with 95% CIs, n and chance; each arm's test accuracy (SVG)."""
    several = len(runs) > 1
    series: dict[str, Mapping[int, Mapping[str, float]]] = {}
    accuracy: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        prefix = f"{run.name}:" if several else ""
        sep = "/" if several else " / "
        for (arm, attack), per_round in by_round(run.rows).items():
            series[_label(f"{prefix}{arm}{sep}{attack}")] = per_round
        for arm, points in run.accuracy.items():
            accuracy[_label(f"{prefix}{arm}")] = points
    chances = [run.chance for run in runs if run.chance is not None]
    svg = figure_svg(rounds_figure(series, chances, accuracy or None), ident)
    notes = [run.chance_note for run in runs if run.chance_note]
    chance_text = ", ".join(f"{c:.0%}" for c in sorted(set(chances))) or "unknown"
    return (
        f'<figure id="{ident}" class="curves" data-series="{len(series)}">{svg}<figcaption>'
        "Per round and series: attack success rate (judge accuracy on reconstructions) with "
        "its Wilson 95% CI, mean SSIM with its t 95% CI, n per point in the legend; dashed: "
        f"the judge's chance level ({esc(chance_text)}). Right: each arm's global model test "
        f"accuracy.{''.join(f' {esc(n)}.' for n in notes)}</figcaption></figure>"
    )


# --------------------------------------------------------------------------- run sections


def _kv(pairs: Sequence[tuple[str, object]], per_row: int = 1) -> str:
    """Key/value pairs as a table, ``per_row`` pairs side by side (filled column by column)."""
    cells = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs]
    height = -(-len(cells) // per_row)
    rows = []
    for i in range(height):
        row: list[object] = []
        for k, v in cells[i::height]:
            row += [Cell(k, cls="k"), v]
        rows.append(row + ["", ""] * (per_row - len(row) // 2))
    return table(["key", "value"] * per_row, rows, cls="kv")


def _status(run: RunData) -> tuple[str, str]:
    if not run.invocations:
        return "empty", "no run recorded"
    if run.invocations[-1]["finished"] is None:
        return "running", "running (or stopped before finishing)"
    return "finished", "finished"


def _header(run: RunData) -> str:
    status, text = _status(run)
    first, last = (run.invocations[0], run.invocations[-1]) if run.invocations else ({}, {})
    parts = [
        f'<p>Status: <span class="status status-{status}">{esc(text)}</span> &middot; started '
        f"{esc(first.get('started') or '-')} &middot; finished {esc(last.get('finished') or '-')}"
        f' &middot; <span class="muted">{esc(run.out_dir)}</span></p>'
    ]
    if len(run.invocations) > 1:
        rows = [[r["id"], r["started"], r["finished"], bool(r["resumed"])] for r in run.invocations]
        parts.append(table(["invocation", "started", "finished", "resumed"], rows))
    return "".join(parts)


def _config(run: RunData, ident: str) -> str:
    """The judge (with its chance level), library versions and the whole run config."""
    chance = run.chance
    level = "unknown" if chance is None else f"{chance:.4g} (1/{run.num_classes} classes)"
    judge_pairs = [*run.judge.items(), ("chance level", level)]
    versions = (run.invocations[-1].get("versions") if run.invocations else None) or {}
    return (
        f'<section id="{ident}" class="config"><details><summary><h3>Judge and config</h3>'
        f'</summary><div class="cols"><div>'
        f"<h4>judge</h4>{_kv(judge_pairs)}</div><div><h4>library versions</h4>"
        f"{_kv(sorted(versions.items()))}</div></div>"
        f"<h4>run config</h4>{_kv(sorted(run.config.items()), per_row=3)}</details></section>"
    )


def run_section(run: RunData, i: int) -> str:
    """Everything about one out dir, in its own section."""
    ident = f"run-{i}"
    status, _ = _status(run)
    attrs = (
        f'id="{ident}" class="run" data-name="{esc(run.name)}" '
        f'data-arms="{esc(",".join(run.arms))}" data-rounds="{len(run.round_numbers)}" '
        f'data-status="{status}" '
        f'data-kind="{"run" if run.has_store else "reproduction"}"'
    )
    parts = [f"<section {attrs}><h2>{esc(run.name)}</h2>"]
    if run.has_store:
        parts += [
            _header(run),
            verdict_html(run, f"{ident}-verdict"),
            grids_section(f"{ident}-grids", run.out_dir, run.grids, run.rows),
            f'<section id="{ident}-leakage"><h3>Leakage per round</h3>',
            curves([run], f"{ident}-curves"),
            "<h4>per arm and attack (all rounds)</h4>",
            summary_html([run], f"{ident}-summary"),
            "<h4>per round</h4>",
            per_round_table(run, f"{ident}-per-round"),
            "</section>",
            faults_section(f"{ident}-faults", run.faults),
            timings_section(f"{ident}-timings", run.rounds, run.rows),
            _config(run, f"{ident}-config"),
        ]  # the answer first; how it was measured at the end
    parts.append(reproduction_section(f"{ident}-reproduction", run.reproductions))
    parts.append("</section>")
    return "".join(parts)


def _names(out_dirs: Sequence[Path]) -> list[str]:
    """Short distinct names: the dir name, with its parent where two would clash."""
    names = [Path(d).resolve().name for d in out_dirs]
    for i, d in enumerate(out_dirs):
        if names.count(names[i]) > 1:
            names[i] = "/".join(Path(d).resolve().parts[-2:])
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def render_report(out_dirs: Sequence[Path]) -> str:
    """The HTML page of one out dir, or a comparison of several."""
    if not out_dirs:
        raise ValueError("no out directory to report")
    runs = [load_run(Path(d), n) for d, n in zip(out_dirs, _names(out_dirs), strict=True)]
    title = f"fl-sim report: {', '.join(r.name for r in runs)}"
    nav = " ".join(f'<a href="#run-{i}">{esc(r.name)}</a>' for i, r in enumerate(runs))
    parts = [f"<h1>{esc(title)}</h1>", f"<nav>{nav}</nav>"]
    stored = [r for r in runs if r.has_store]
    if len(stored) > 1:
        parts += [
            '<section id="compare" class="compare"><h2>Comparison</h2>',
            curves(stored, "compare-curves"),
            summary_html(stored, "compare-summary"),
            "</section>",
        ]
    parts += [run_section(run, i) for i, run in enumerate(runs)]
    return page(title, "\n".join(parts))


def write_html_report(out_dirs: Sequence[Path], path: Path) -> Path:
    """Render and write the page atomically (temp file in the same dir, then rename)."""
    return write_atomic(Path(path), render_report(out_dirs))
