"""The docs: a short README whose links resolve, and reference pages generated from the code
(every config key with its meaning, every command) so they cannot drift from it."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

from fl_sim.cli import build_parser
from fl_sim.config_docs import KEY_DOCS
from fl_sim.federation.run_config import RunConfig

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
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| `([^`]*)` \| `([^`]*)` \|", config, re.M)
    assert [name for name, _, _, _ in rows] == RunConfig.keys()
    defaults = {name: default for name, _, _, default in rows}
    assert defaults["clients"] == str(RunConfig().federation.clients)  # not a copy
    roles = {name: role for name, role, _, _ in rows}  # the section that owns each key
    assert roles == {name: RunConfig.role_of(name) for name in defaults}
    want = {"dataset": "data", "clients": "federation", "attacks": "attack"}
    want |= {"judge_epochs": "judge", "device": "runtime", "out": "results"}
    assert {k: roles[k] for k in want} == want
    assert "dlg, grnn, idlg" in config  # allowed values: what the config answers a bad one
    cli = (tmp_path / "reference" / "cli.md").read_text()
    commands = next(
        a.choices for a in build_parser()._actions if hasattr(a, "choices") and a.choices
    )
    assert all(f"## fl-sim {name}\n" in cli for name in commands)
    assert "--resume DIR" in cli


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``fl-sim ...`` / ``python -m experiments...`` command in a shell block of the
    README and the docs, as (file, argv): comments, continuations and ``&&`` chains split."""
    import shlex

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    argv = shlex.split(part, comments=True)
                    experiment = argv[:2] == ["python", "-m"] and argv[2:3] != []
                    if argv[:1] == ["fl-sim"] or (experiment and argv[2].startswith("experiments")):
                        found.append((path.name, argv))
    return found


def test_the_documented_commands_parse_as_written() -> None:
    """Each documented ``fl-sim`` command is accepted by the CLI's parser and its ``--set``
    items are config keys with valid values; each experiment module exists. (Placeholders
    such as ``[--config FILE]`` are skipped.)"""
    import importlib

    from fl_sim.config import parse_overrides

    commands = documented_commands()
    assert len(commands) >= 10, commands
    checked = 0
    for where, argv in commands:
        if any(a.startswith("[") or a.isupper() for a in argv):
            continue  # a synopsis with placeholders, not a command
        if argv[0] == "python":
            importlib.import_module(argv[2])
            continue
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit as err:  # argparse's way of refusing
            pytest.fail(f"{where}: {' '.join(argv)} is refused (exit {err.code})")
        overrides = getattr(args, "overrides", None) or []
        RunConfig.from_mapping(parse_overrides(list(overrides)))
        checked += 1
    assert checked >= 10


QUICK = ("compose-file",)  # documented subcommands that finish in a second: run as written


def test_the_quick_documented_commands_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fl_sim.cli import main

    monkeypatch.chdir(tmp_path)
    quick = [(where, argv) for where, argv in documented_commands() if argv[1:2][0] in QUICK]
    assert quick, "no quick command documented any more: update QUICK"
    for where, argv in quick:
        assert main(argv[1:]) == 0, f"{where}: {' '.join(argv)}"
        written = Path(argv[argv.index("-o") + 1]) if "-o" in argv else None
        assert written is None or written.stat().st_size > 0, f"{where}: {written} not written"
