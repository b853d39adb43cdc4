"""The docs: a short README whose links resolve, and reference pages generated from the code
(every config key with its meaning, every command) so they cannot drift from it."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

from fl_sim.cli import build_parser
from fl_sim.config import RunConfig
from fl_sim.config_docs import KEY_DOCS

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_config_key_has_a_meaning_and_nothing_else_does() -> None:
    assert list(KEY_DOCS) == RunConfig.keys()  # same keys, in the dataclass' order
    assert all(text.strip() for text in KEY_DOCS.values())


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 16_000
    missing = [
        target
        for target in LINK.findall(readme)
        if not target.startswith(("http://", "https://")) and not (ROOT / target).exists()
    ]
    assert missing == []


def test_reference_pages_are_generated_from_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["gen", "--out", str(tmp_path)])
    runpy.run_path(str(ROOT / "scripts" / "gen_docs_reference.py"), run_name="__main__")
    config = (tmp_path / "reference" / "config.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| `([^`]*)` \|", config, re.M)
    assert [name for name, _, _ in rows] == RunConfig.keys()
    defaults = {name: default for name, _, default in rows}
    assert defaults["clients"] == str(RunConfig().clients)  # from the dataclass, not a copy
    assert "dlg, grnn, idlg" in config  # allowed values: what the config answers a bad one
    cli = (tmp_path / "reference" / "cli.md").read_text()
    commands = next(
        a.choices for a in build_parser()._actions if hasattr(a, "choices") and a.choices
    )
    assert all(f"## fl-sim {name}\n" in cli for name in commands)
    assert "--resume DIR" in cli
