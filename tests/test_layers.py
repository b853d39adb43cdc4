"""The layers of the code (docs/explanation/architecture.md): a package imports only from the
layers below it or from itself, and no modules import each other in a circle. Every import
counts: lazy ones inside functions and ``TYPE_CHECKING`` ones too (``imports_of``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from test_boundaries import ROOT, imports_of, module_name

# Lowest first. "fl_sim" is the package's own top-level modules (config, names, atomic_file,
# ...); fl_sim.cli (and ``python -m fl_sim``), the entry point, sits on top.
LAYERS = (
    "models", "attacks", "fl_sim", "fl_sim.ops", "fl_sim.data", "fl_sim.results",
    "fl_sim.evaluation", "fl_sim.federation", "experiments", "fl_sim.commands", "fl_sim.cli",
)  # fmt: skip
PACKAGES = ("models", "attacks", "fl_sim", "experiments")
ENTRY_POINTS = ("cli", "__main__")  # fl_sim's modules in the top layer


def layer(module: str, root: Path = ROOT) -> str | None:
    """The layer of a dotted module name of the project; None outside it."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] != "fl_sim" or len(parts) == 1:
        return parts[0]
    if parts[1] in ENTRY_POINTS:
        return "fl_sim.cli"
    return f"fl_sim.{parts[1]}" if (root / "fl_sim" / parts[1]).is_dir() else "fl_sim"


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a ``from package import name`` counts as
    importing ``package.name`` when that is a module, else ``package``)."""
    files = {
        module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = set()
        for _, target, _ in imports_of(path, root):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def upward_imports(root: Path) -> set[tuple[str, str]]:
    """(module, layer imported) for every import of a higher layer under ``root``."""
    found = set()
    for module, targets in import_graph(root).items():
        src = layer(module, root)
        for target in targets:
            dst = layer(target, root)
            if src and dst and LAYERS.index(dst) > LAYERS.index(src):
                found.add((module, dst))
    return found


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(root: Path) -> dict[str, set[str]]:
    """The import graph with each package (a layer: ``fl_sim/federation/`` with its
    sub-folders, ``attacks/``, ``experiments/``, ...) as one node."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(root).items():
        src = layer(module, root)
        if src is not None:
            graph.setdefault(src, set()).update(
                dst for t in targets if (dst := layer(t, root)) not in (None, src)
            )
    return graph


def test_every_package_has_a_layer() -> None:
    dirs = {f"fl_sim.{p.name}" for p in (ROOT / "fl_sim").iterdir() if (p / "__init__.py").exists()}
    assert dirs <= set(LAYERS), sorted(dirs - set(LAYERS))


def test_no_layer_imports_from_above() -> None:
    assert upward_imports(ROOT) == set()


def test_no_modules_and_no_packages_import_each_other_in_a_circle() -> None:
    assert cycles(import_graph(ROOT)) == []
    assert cycles(package_graph(ROOT)) == []


def test_the_checks_see_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "models" / "bad.py").write_text("def f():\n    from fl_sim.cli import main\n")
    (tmp_path / "attacks" / "a.py").write_text("from attacks import b\n")
    (tmp_path / "attacks" / "b.py").write_text("def g():\n    import attacks.a\n")
    (tmp_path / "fl_sim" / "cli.py").write_text("import models.bad\n")
    assert upward_imports(tmp_path) == {("models.bad", "fl_sim.cli")}
    assert sorted(cycles(import_graph(tmp_path))) == [
        ["attacks.a", "attacks.b"],
        ["fl_sim.cli", "models.bad"],
    ]
    assert cycles(package_graph(tmp_path)) == [["fl_sim.cli", "models"]]
