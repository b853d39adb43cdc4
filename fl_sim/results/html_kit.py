"""Building blocks of a self-contained HTML page: escaped sortable tables, inline SVG figures,
base64 images, the page shell (inline CSS and JS) and an atomic write. No network, ever."""

from __future__ import annotations

import base64
import html
import io
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

from fl_sim.atomic_file import atomic_write

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "Cell",
    "esc",
    "figure_svg",
    "image_tag",
    "num",
    "page",
    "png_size",
    "stat",
    "table",
    "whole",
    "write_atomic",
]

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;padding:0 16px 40px;max-width:1200px;
color:#1d1d1f;background:#fff;box-sizing:border-box}
h1{font-size:22px;margin:18px 0 6px}h2{font-size:19px;margin:26px 0 6px;
border-bottom:2px solid #ccd;padding-bottom:3px}h3{font-size:16px;margin:18px 0 6px}
h4{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;margin:6px 0 12px;max-width:100%;font-size:13px}
th,td{border:1px solid #d4d4dc;padding:3px 6px;text-align:left;vertical-align:top;
overflow-wrap:anywhere;word-break:break-word}
th{background:#eef0f6}table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#99a;font-size:11px}
th[aria-sort=ascending]::after{content:" \\2191"}th[aria-sort=descending]::after{content:" \\2193"}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv{width:100%}table.kv td.k{font-weight:600;width:1%;white-space:nowrap;overflow-wrap:normal;
word-break:normal}
tr.flagged td{background:#ffe3e0}span.flag{color:#b3261e;font-weight:700}
.muted{color:#666}.ok{color:#1b7a2e}.bad{color:#b3261e}
.status-finished{color:#1b7a2e;font-weight:700}.status-running{color:#a15c00;font-weight:700}
svg.figure{width:100%;height:auto;display:block}img{max-width:100%;height:auto}
figure{margin:8px 0 18px}.gridrow{display:flex;flex-wrap:wrap;gap:0 28px;
align-items:flex-start}.grid{flex:0 1 auto;min-width:0}.grid img{width:100%;display:block}
.grid table{width:100%;table-layout:fixed;margin-top:0;font-size:11px}
.cols{display:flex;flex-wrap:wrap;gap:0 24px}.cols>div{flex:1 1 420px;min-width:0}
nav a{margin-right:12px}details summary{cursor:pointer;margin:6px 0}
"""

# Click a header of a table.sortable to sort its body by that column (numbers by data-v).
JS = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(Number(v))) { return [0, Number(v), ""]; }
    var t = cell.textContent.trim();
    return t === "" || t === "-" ? [2, 0, ""] : [1, 0, t];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) { return a[0] - b[0]; }
    if (a[0] === 0) { return a[1] - b[1]; }
    return a[2].localeCompare(b[2], undefined, {numeric: true});
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (x, y) {
          var a = key(x.cells[col]), b = key(y.cells[col]);
          var c = a[0] === 2 || b[0] === 2 ? a[0] - b[0] : compare(a, b);
          return asc || a[0] === 2 || b[0] === 2 ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def esc(value: object) -> str:
    """HTML-escaped text of any value (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def whole(value: object) -> int:
    """An integer cell (int, numeric text or an integral float) as int."""
    return int(float(str(value)))


def num(value: float, spec: str = ".3f") -> str:
    """A statistic as text; nan (no data) as '-'."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


@dataclass(frozen=True)
class Cell:
    """A table cell: escaped text unless ``markup``; ``sort`` is its numeric sort key."""

    text: str
    sort: float | None = None
    cls: str = ""
    markup: bool = False

    def render(self) -> str:
        attrs = ""
        if self.sort is not None and not math.isnan(self.sort):
            key = max(-1e308, min(1e308, self.sort))  # inf sorts last (first): JS's Number
            attrs += f' data-v="{key:.12g}"'
        if self.cls:
            attrs += f' class="{esc(self.cls)}"'
        return f"<td{attrs}>{self.text if self.markup else esc(self.text)}</td>"


def _cell(value: object) -> Cell:
    """A plain value as a cell: numbers right-aligned and sortable."""
    if isinstance(value, Cell):
        return value
    if isinstance(value, bool) or value is None:
        return Cell("-" if value is None else str(value))
    if isinstance(value, int | float):
        return Cell(str(value), float(value), "n")
    return Cell(str(value))


def stat(value: float, spec: str) -> Cell:
    """A statistic's cell: formatted text ('-' for nan), sorted by its value."""
    return Cell(num(value, spec), value, "n")


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    id: str = "",
    cls: str = "sortable",
    row_attrs: Sequence[str] | None = None,
) -> str:
    """An escaped HTML table; ``row_attrs`` gives raw attributes per body row."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for i, row in enumerate(rows):
        extra = f" {row_attrs[i]}" if row_attrs and row_attrs[i] else ""
        body.append(f"<tr{extra}>" + "".join(_cell(v).render() for v in row) + "</tr>")
    ident = f' id="{esc(id)}"' if id else ""
    return (
        f'<table{ident} class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def figure_svg(fig: Figure, salt: str) -> str:
    """A matplotlib figure as inline ``<svg>`` (text kept as text, ids prefixed with ``salt``
    so several figures share a page); closes the figure."""
    buf = io.StringIO()
    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # ids unique in the page: prefix every id and every reference to one with the salt
    text = re.sub(r'(\sid="|href="#|url\(#)', lambda m: f"{m[1]}{salt}-", text)
    # scale with the page: drop the fixed size, keep the viewBox
    return re.sub(
        r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
        r'<svg\1 class="figure" role="img"',
        text,
        count=1,
    )


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header; None if the file is not a PNG."""
    with Path(path).open("rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def image_tag(path: Path, alt: str) -> str:
    """An ``<img>`` with the file inlined as a base64 data URI."""
    mime = MIME.get(Path(path).suffix.lower(), "image/png")
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:{mime};base64,{data}">'


def page(title: str, body: str) -> str:
    """The whole document: inline CSS and JS, no external resource (not even a favicon)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style>'
        f"</head><body>\n{body}\n<script>{JS}</script></body></html>\n"
    )


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` via a temp file in the same dir and a rename: readers never see half."""
    path = Path(path)
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path
