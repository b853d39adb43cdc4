"""``fl-sim report``: the self-contained HTML page of one or more out dirs, on demand."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``report`` subcommand's arguments."""
    report = sub.add_parser(
        "report",
        help="write report.html (leakage curves, tables, grids) of one or more out dirs",
        description="Renders one self-contained HTML page (no network: inline CSS, JS, SVG and "
        "images) from each DIR's results store and *.reproduction.json files; several DIRs are "
        "compared on one page. Default output: DIR/report.html for one DIR, ./report.html for "
        "several.",
    )
    report.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="run out directory")
    report.add_argument("--out", type=Path, metavar="PATH", help="write the page here")


def cmd_report(args: argparse.Namespace) -> int:
    """Check every dir first (FileNotFoundError: one line, exit 2), then render and write."""
    from fl_sim.results.html_report import REPORT_HTML, check_report_dir, write_html_report
    from fl_sim.results.preflight import check_out_dir, check_store
    from fl_sim.results.store import DB_NAME

    for path in args.dirs:
        check_report_dir(path)
        if (path / DB_NAME).exists():
            check_store(path)
    default = args.dirs[0] / REPORT_HTML if len(args.dirs) == 1 else Path(REPORT_HTML)
    page = Path(args.out or default)
    if page.is_dir():
        raise ValueError(f"{page} is a directory: pass the page's file name with --out")
    check_out_dir(page.parent)
    written = write_html_report(args.dirs, page)
    print(f"fl-sim: wrote {written}")
    return 0
