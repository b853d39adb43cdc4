"""Generate the docs' reference pages from the code at build time (mkdocs-gen-files): every
``fl-sim`` command with its flags (from the argparse parser) and every config key with its
type, default and allowed values (from ``RunConfig``) and meaning (``fl_sim.config_docs``),
so a changed default or flag changes the page. Runs as a mkdocs-gen-files script;
``python scripts/gen_docs_reference.py --out DIR`` writes the same pages into DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width: fix it

from fl_sim.cli import build_parser  # noqa: E402
from fl_sim.config_docs import KEY_DOCS  # noqa: E402
from fl_sim.federation.run_config import SECTIONS, RunConfig, section_fields  # noqa: E402


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def cli_page() -> str:
    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "Generated from `fl_sim.cli.build_parser` when the site is built. Every `--set KEY=VALUE`"
        " takes a key of the [configuration](config.md).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, sub in subcommands(parser):
        lines += ["", f"## fl-sim {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def allowed_values(key: str, probe: Callable[[str], object]) -> str:
    """The allowed values a bad value of ``key`` is refused with ("valid: ..."), or ""."""
    try:
        probe("\x00not-a-value")
    except (ValueError, TypeError) as err:
        match = re.search(r"(?:valid|allowed|one of)[^:]*:\s*(.+)$", str(err))
        return match[1].strip() if match else ""
    return ""


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_page() -> str:
    lines = [
        "# Configuration keys",
        "",
        "Generated from the typed config sections when the site is built: every key is a "
        "`--set KEY=VALUE` item, a key of a `--config` TOML file and of the Flower run config "
        "(`[tool.flwr.app.config]` in pyproject.toml). Each key belongs to the section of the "
        "role that uses it (the *role* column; sections: "
        + ", ".join(f"`{cls.__module__}.{cls.__name__}`" for cls in SECTIONS.values())
        + "), composed by `fl_sim.federation.run_config.RunConfig`. Allowed values are what "
        "the config itself answers to a bad value.",
        "",
        "| key | role | type | default | meaning | allowed |",
        "|---|---|---|---|---|---|",
    ]
    for role, f in section_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, tuple):
            default = ",".join(map(str, default)) or "(none)"
        elif default == "":
            default = '""'
        allowed = ""
        if f.type in ("str", "tuple[str, ...]"):
            allowed = allowed_values(f.name, lambda v, k=f.name: RunConfig.from_mapping({k: v}))
        lines.append(
            f"| `{f.name}` | {role} | `{cell(f.type)}` | `{cell(default)}` | "
            f"{cell(KEY_DOCS[f.name])} | {cell(allowed)} |"
        )
    return "\n".join(lines) + "\n"


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--out"] and len(argv) == 2:
        for name, page in PAGES.items():
            path = Path(argv[1]) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(page())
        return
    import mkdocs_gen_files  # run by mkdocs (its argv is mkdocs')

    for name, page in PAGES.items():
        with mkdocs_gen_files.open(name, "w") as fh:
            fh.write(page())


main(sys.argv[1:])
