"""Sections of the HTML run report that show stored detail: image grids with each
reconstruction's SSIM and judge verdict, faults, timings and reproduction tables."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fl_sim.results.html_kit import Cell, esc, image_tag, num, png_size, stat, table, whole
from fl_sim.results.report import cell_number

__all__ = [
    "MAX_GRIDS",
    "REPRODUCTION_SUFFIX",
    "Reproduction",
    "evenly",
    "faults_section",
    "grids_section",
    "load_reproductions",
    "reproduction_section",
    "timings_section",
]

MAX_GRIDS = 12  # grids embedded per arm; a long run's others stay in grids/
REPRODUCTION_SUFFIX = ".reproduction.json"

Row = Mapping[str, object]


def evenly(m: int, k: int = MAX_GRIDS) -> list[int]:
    """At most ``k`` of ``range(m)``, evenly spaced, always the first and the last."""
    if m <= k:
        return list(range(m))
    if k < 2:
        return [m - 1][:k]
    return sorted({round(i * (m - 1) / (k - 1)) for i in range(k)})


# --------------------------------------------------------------------------- grids


def _verdict(row: Row) -> Cell:
    """One reconstruction's cell under the grid: SSIM and the judge's class, right or not."""
    ssim, pred, ok = cell_number(row["ssim"]), row["judge_pred"], row["judge_correct"]
    mark = '<span class="ok">&#10003;</span>' if ok == 1 else '<span class="bad">&#10007;</span>'
    judge = "judge -" if pred is None else f"judge {esc(pred)} {mark}"
    status = str(row["status"] or "")
    note = "" if status in ("ok", "converged", "") else f"<br>{esc(status)}"
    attrs = (
        f'data-client="{esc(row["client"])}" data-sample="{esc(row["sample"])}" '
        f'data-ssim="{"" if math.isnan(ssim) else repr(ssim)}" '
        f'data-judge="{esc("" if pred is None else pred)}" data-correct="{1 if ok == 1 else 0}"'
    )
    return Cell(f"<span {attrs}>SSIM {num(ssim)}<br>{judge}</span>{note}", markup=True)


def _sample_table(rows: Sequence[Row], label_frac: float) -> str:
    """One column per captured sample (as in the grid), one row per attack."""
    samples = sorted({(whole(r["client"]), whole(r["sample"])) for r in rows})
    labels = {(whole(r["client"]), whole(r["sample"])): r["label_true"] for r in rows}
    attacks = list(dict.fromkeys(str(r["attack"]) for r in rows))
    by_key = {(str(r["attack"]), whole(r["client"]), whole(r["sample"])): r for r in rows}
    width = (100.0 - 100.0 * label_frac) / max(len(samples), 1)
    cols = f'<col style="width:{100 * label_frac:.2f}%">' + "".join(
        f'<col style="width:{width:.2f}%">' for _ in samples
    )
    head = "<th>attack</th>" + "".join(
        f"<th>c{c} s{s} y={esc('-' if labels[c, s] is None else labels[c, s])}</th>"
        for c, s in samples
    )
    body = ""
    for attack in attacks:
        cells = [by_key.get((attack, c, s)) for c, s in samples]
        body += f'<tr data-attack="{esc(attack)}"><th>{esc(attack)}</th>' + "".join(
            "<td>-</td>" if r is None else _verdict(r).render() for r in cells
        )
        body += "</tr>"
    return (
        f'<table class="samples"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _grid_figure(out_dir: Path, grid: str, arm: str, rnd: int, rows: Sequence[Row]) -> str:
    """The grid image inlined, with its sample table below it at the same width."""
    path = out_dir / grid
    n = len({(r["client"], r["sample"]) for r in rows})
    label_frac = 0.8 / (1.6 * max(n, 1) + 0.8)  # save_grid: 1.6 in per sample, 0.8 margin
    if path.is_file():
        size = png_size(path)
        style = f' style="max-width:{size[0]}px"' if size else ""
        img = image_tag(path, f"{arm} round {rnd}: ground truth and reconstructions")
    else:
        style, img = "", f'<p class="bad">grid file missing: {esc(grid)}</p>'
    return (
        f'<figure class="grid" data-arm="{esc(arm)}" data-round="{rnd}"{style}>'
        f"<figcaption>{esc(arm)} round {rnd} ({esc(grid)})</figcaption>{img}"
        f"{_sample_table(rows, label_frac)}</figure>"
    )


def grids_section(
    ident: str, out_dir: Path, grids: Sequence[Row], rows: Sequence[Row], limit: int = MAX_GRIDS
) -> str:
    """Per arm, the round grids (at most ``limit``, evenly spaced) with their sample tables."""
    per_round: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        per_round.setdefault((str(r["arm"]), whole(r["round"])), []).append(r)
    by_arm: dict[str, list[Row]] = {}
    for g in grids:
        by_arm.setdefault(str(g["arm"]), []).append(g)
    parts = [f'<section id="{ident}" class="grids"><h3>Image grids</h3>']
    if not by_arm:
        parts.append('<p class="muted">no image grids (grids=false, or no attacked round)</p>')
    for arm, arm_grids in sorted(by_arm.items()):
        shown = [arm_grids[i] for i in evenly(len(arm_grids), limit)]
        parts.append(
            f'<h4>{esc(arm)}: <span class="grid-count" data-shown="{len(shown)}" '
            f'data-total="{len(arm_grids)}">{len(shown)} of {len(arm_grids)} grids shown, '
            "all in grids/</span></h4>"
        )
        parts.append(
            '<p class="muted">Top row: ground truth (c client, s sample, y true label); below, '
            "one row per attack. Under each column: the reconstruction's SSIM and the judge's "
            "class (&#10003; correct, i.e. leaked).</p>"
        )
        parts.append('<div class="gridrow">')
        for g in shown:
            key = (arm, whole(g["round"]))
            parts.append(_grid_figure(out_dir, str(g["grid"]), arm, key[1], per_round[key]))
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


# --------------------------------------------------------------------------- faults, timings


def faults_section(ident: str, faults: Sequence[Row]) -> str:
    """Replies left out of aggregation, or 'none'."""
    body = (
        table(
            ["arm", "round", "node", "client", "reason"],
            [[f["arm"], f["round"], f["node"], f["client"], f["reason"]] for f in faults],
            id=f"{ident}-table",
        )
        if faults
        else "<p>none</p>"
    )
    return (
        f'<section id="{ident}" class="faults" data-count="{len(faults)}">'
        f"<h3>Faults (replies left out of aggregation)</h3>{body}</section>"
    )


SUMMARIES = {"sum": sum, "median": statistics.median, "mean": statistics.fmean}


def _seconds(values: Sequence[float], how: str) -> Cell:
    """A sum, median or mean of seconds (nan values skipped) as a sortable cell."""
    vals = [v for v in values if not math.isnan(v)]
    value = float(SUMMARIES[how](vals)) if vals else math.nan
    return stat(value, ".1f" if how == "sum" else ".2f")


def timings_section(ident: str, rounds: Sequence[Row], rows: Sequence[Row]) -> str:
    """Per arm: rounds and seconds per round; per (arm, attack): mean attack seconds; all
    rounds in a collapsed table."""
    arms: dict[str, list[float]] = {}
    for r in rounds:
        arms.setdefault(str(r["arm"]), []).append(cell_number(r["seconds"]))
    per_arm = [
        [arm, len(secs), _seconds(secs, "sum"), _seconds(secs, "median")]
        for arm, secs in sorted(arms.items())
    ]
    attacks: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        attacks.setdefault((str(r["arm"]), str(r["attack"])), []).append(cell_number(r["seconds"]))
    per_attack = [
        [arm, attack, len(secs), _seconds(secs, "mean")]
        for (arm, attack), secs in sorted(attacks.items())
    ]
    full = [
        [
            r["arm"], r["round"], stat(cell_number(r["seconds"]), ".1f"), r["replies"],
            r["captures"], r["attacked"], stat(100 * cell_number(r["accuracy"]), ".1f"),
            r["finished"],
        ]
        for r in rounds
    ]  # fmt: skip
    return (
        f'<section id="{ident}" class="timings"><h3>Timings</h3><div class="cols"><div>'
        + "<h4>rounds per arm</h4>"
        + table(["arm", "rounds", "total s", "median s / round"], per_arm, id=f"{ident}-arms")
        + "</div><div><h4>attacks per arm and attack</h4>"
        + table(
            ["arm", "attack", "rows", "mean attack s (per capture)"],
            per_attack,
            id=f"{ident}-attacks",
        )
        + "</div></div><details><summary>every round</summary>"
        + table(
            ["arm", "round", "s", "replies", "captures", "attacked", "test acc %", "finished"],
            full,
            id=f"{ident}-rounds",
        )
        + "</details></section>"
    )


# --------------------------------------------------------------------------- reproduction


@dataclass
class Reproduction:
    """One ``*.reproduction.json``: a paper table reproduced, rows flagged where the published
    value lies outside our 95% CI."""

    path: Path
    name: str = ""
    title: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    error: str = ""


def _load_reproduction(path: Path) -> Reproduction:
    """Parse and check one file; a broken one comes back with ``error`` set."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        columns = [str(c) for c in data.get("columns") or []]
        rows = [[str(c) for c in row] for row in data.get("rows") or []]
        flagged = [bool(f) for f in data.get("flagged") or []]
        if len(flagged) not in (0, len(rows)):
            raise ValueError(f"{len(flagged)} flags for {len(rows)} rows")
        return Reproduction(
            path, str(data.get("name") or path.name.removesuffix(REPRODUCTION_SUFFIX)),
            str(data.get("title") or ""), columns, rows, flagged or [False] * len(rows),
            [str(n) for n in data.get("notes") or []], [str(f) for f in data.get("figures") or []],
        )  # fmt: skip
    except (OSError, ValueError, TypeError) as err:
        return Reproduction(path, name=path.name, error=f"{type(err).__name__}: {err}")


def load_reproductions(out_dir: Path) -> list[Reproduction]:
    """Every ``*.reproduction.json`` in ``out_dir``, by file name."""
    return [_load_reproduction(p) for p in sorted(Path(out_dir).glob(f"*{REPRODUCTION_SUFFIX}"))]


def _flag(text: str, flagged: bool) -> object:
    """A flagged row's first cell carries the flag mark."""
    return Cell(f'<span class="flag">&#9873;</span> {esc(text)}', markup=True) if flagged else text


def _reproduction(rep: Reproduction, ident: str) -> str:
    """One reproduction table with its flag legend, notes and figures."""
    name = f'<span class="muted">({esc(rep.path.name)})</span>'
    parts = [f'<div class="reproduction" id="{ident}" data-name="{esc(rep.name)}">']
    parts.append(f"<h4>{esc(rep.title or rep.name)} {name}</h4>")
    if rep.error:
        return "".join(parts) + f'<p class="bad">unreadable: {esc(rep.error)}</p></div>'
    width = max([len(rep.columns), *(len(r) for r in rep.rows)])
    columns = rep.columns + [""] * (width - len(rep.columns))
    rows = [
        [_flag(row[0], flag), *row[1:]] + [""] * (width - len(row)) if row else [""] * width
        for row, flag in zip(rep.rows, rep.flagged, strict=True)
    ]
    attrs = ['class="flagged" data-flagged="1"' if f else 'data-flagged="0"' for f in rep.flagged]
    parts.append(table(columns, rows, row_attrs=attrs))
    if any(rep.flagged):
        parts.append(
            '<p><span class="flag">&#9873;</span> flagged (highlighted) row: the published '
            "value lies outside our 95% CI.</p>"
        )
    if rep.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in rep.notes) + "</ul>")
    for fig in rep.figures:
        path = rep.path.parent / fig
        missing = f'<p class="bad">figure missing: {esc(fig)}</p>'
        img = image_tag(path, fig) if path.is_file() else missing
        parts.append(f"<figure>{img}<figcaption>{esc(fig)}</figcaption></figure>")
    parts.append("</div>")
    return "".join(parts)


def reproduction_section(ident: str, reproductions: Sequence[Reproduction]) -> str:
    """Every reproduction table of an out dir, or nothing."""
    if not reproductions:
        return ""
    body = "".join(_reproduction(r, f"{ident}-{i}") for i, r in enumerate(reproductions))
    return (
        f'<section id="{ident}" class="reproductions" data-count="{len(reproductions)}">'
        f"<h3>Reproduction tables</h3>{body}</section>"
    )
