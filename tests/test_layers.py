"""The layers of the code (docs/explanation/architecture.md): a package imports only from the
layers below it. The upward imports still there are listed by name and must shrink, never
grow: a new one fails, and one that is gone must be struck from the list (issue 28 item 4,
config by role, removes the rest)."""

from __future__ import annotations

from pathlib import Path

from test_boundaries import ROOT, imports_of

# Lowest first. "fl_sim" is the package's own top-level modules (config, names, atomic_file,
# ...); fl_sim.cli, the entry point, sits on top.
LAYERS = (
    "models", "attacks", "fl_sim", "fl_sim.ops", "fl_sim.data", "fl_sim.results",
    "fl_sim.evaluation", "fl_sim.federation", "experiments", "fl_sim.commands", "fl_sim.cli",
)  # fmt: skip
PACKAGES = ("models", "attacks", "fl_sim", "experiments")
KNOWN_UPWARD = {
    ("experiments/runs.py", "fl_sim.cli"),  # runs `fl-sim run` in process
    ("fl_sim/config.py", "fl_sim.data"),  # the one RunConfig validates every role's keys
    ("fl_sim/config.py", "fl_sim.federation"),
    ("fl_sim/evaluation/audit.py", "fl_sim.federation"),  # private_batch, for ground truth
    ("fl_sim/results/resume.py", "fl_sim.federation"),  # strategy state on resume
}


def layer(module: str) -> str | None:
    """The layer of a dotted module name of the project; None outside it."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] != "fl_sim" or len(parts) == 1:
        return parts[0]
    if parts[1] == "cli":
        return "fl_sim.cli"
    return f"fl_sim.{parts[1]}" if (ROOT / "fl_sim" / parts[1]).is_dir() else "fl_sim"


def upward_imports(root: Path) -> set[tuple[str, str]]:
    """(file, layer imported) for every import of a higher layer under ``root``."""
    found = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            src = layer(".".join(rel.with_suffix("").parts))
            for _, target, _ in imports_of(path, root):
                dst = layer(target)
                if src and dst and LAYERS.index(dst) > LAYERS.index(src):
                    found.add((rel.as_posix(), dst))
    return found


def test_every_package_has_a_layer() -> None:
    dirs = {f"fl_sim.{p.name}" for p in (ROOT / "fl_sim").iterdir() if (p / "__init__.py").exists()}
    assert dirs <= set(LAYERS), sorted(dirs - set(LAYERS))


def test_no_layer_imports_from_above_but_the_known_few() -> None:
    assert upward_imports(ROOT) == KNOWN_UPWARD


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "bad.py").write_text("def f():\n    from fl_sim.cli import main\n")
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    assert upward_imports(tmp_path) == {("models/bad.py", "fl_sim.cli")}
