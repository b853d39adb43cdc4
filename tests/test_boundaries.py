"""Import boundaries of the threat model, checked on the source (every module, recursively).

Attacks and the models they build see only what the eavesdropper sees: nothing under
``attacks/`` or ``models/`` may import ``fl_sim`` (where the audit channel's ground truth
lives). Client code must not import attack code. The walker is itself tested on a package
with forbidden imports, so a broken walk cannot pass silently.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_FUNCTIONS = {"import_module", "__import__"}  # importlib.import_module, __import__
CLIENT_CODE = [
    "fl_sim/federation/client_app.py",
    "fl_sim/federation/training.py",
    "fl_sim/federation/task.py",
    "fl_sim/federation/partition.py",
    "fl_sim/federation/transforms",
]


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module in ``path`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> Iterator[tuple[int, str, str]]:
    """(line, absolute module name, how) of every import in ``path``: ``import``, ``from``
    (relative ones resolved; beyond the top level they resolve to ``<outside>``), and calls of
    ``importlib.import_module`` / ``__import__`` with a string literal, wherever they occur."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, "import"
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            elif node.level - 1 > len(package) - 1:
                base = "<outside>"
            else:
                base = ".".join([*package[: len(package) - node.level + 1], node.module or ""])
            base = base.strip(".")
            for alias in node.names:  # an imported name may be a submodule
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name, "from"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in IMPORT_FUNCTIONS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value, called


def python_files(root: Path, targets: Iterable[str]) -> list[Path]:
    """Every ``.py`` file of ``targets`` (files, or directories walked recursively)."""
    files: list[Path] = []
    for target in targets:
        path = root / target
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def violations(
    root: Path, targets: Iterable[str], forbidden: str, same_top_level: bool = True
) -> tuple[list[str], int]:
    """Imports of ``forbidden`` (or its submodules) in ``targets``; with ``same_top_level``,
    also relative imports leaving the file's top-level package. Returns them and the number
    of modules read."""
    found, files = [], python_files(root, targets)
    for path in files:
        top = module_name(path, root).split(".")[0]
        for line, imported, how in imports_of(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if imported == forbidden or imported.startswith(f"{forbidden}."):
                found.append(f"{where} {how} {imported}")
            elif same_top_level and how == "from" and imported.split(".")[0] == "<outside>":
                found.append(f"{where} relative import beyond {top}")
    return found, len(files)


def test_attacks_and_models_import_nothing_from_fl_sim() -> None:
    """The threat model: no code an attack runs can reach the audit channel."""
    found, visited = violations(ROOT, ["attacks", "models"], "fl_sim")
    assert found == []
    on_disk = len(list((ROOT / "attacks").rglob("*.py"))) + len(
        list((ROOT / "models").rglob("*.py"))
    )
    assert visited == on_disk and visited >= 20, visited


def test_client_code_imports_nothing_from_attacks() -> None:
    """Clients train and transform their update without attack code."""
    found, visited = violations(ROOT, CLIENT_CODE, "attacks")
    assert found == []
    assert visited >= len(CLIENT_CODE) + 4, visited  # the transforms package has 5+ modules


def test_walker_finds_every_kind_of_forbidden_import(tmp_path: Path) -> None:
    """Sub-packages, lazy imports, relative imports and import_module strings are caught."""
    files = {
        "attacks/__init__.py": "from attacks.ok import fine\n",
        "attacks/ok.py": "import models.public\nfrom .sub import deep\nfrom . import ok\n",
        "attacks/sub/__init__.py": "",
        "attacks/sub/deep.py": "def f():\n    from fl_sim.evaluation import audit\n",
        "attacks/sub/deeper/__init__.py": "import fl_sim\n",
        "attacks/rel.py": "from .. import fl_sim\n",
        "attacks/sub/rel.py": "from ...fl_sim import audit\nfrom .. import ok\n",
        "attacks/dyn.py": "import importlib\nm = importlib.import_module('fl_sim.evaluation')\n",
        "attacks/dunder.py": "m = __import__('fl_sim')\n",
        "attacks/name.py": "from importlib import import_module\nimport_module('fl_simx')\n",
        "models/m.py": "from fl_sim import config as c\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found, visited = violations(tmp_path, ["attacks", "models"], "fl_sim")
    assert visited == len(files)
    assert sorted(found) == [
        "attacks/dunder.py:1 __import__ fl_sim",
        "attacks/dyn.py:2 import_module fl_sim.evaluation",
        "attacks/rel.py:1 relative import beyond attacks",
        "attacks/sub/deep.py:2 from fl_sim.evaluation.audit",
        "attacks/sub/deeper/__init__.py:1 import fl_sim",
        "attacks/sub/rel.py:1 relative import beyond attacks",
        "models/m.py:1 from fl_sim.config",
    ]
    # relative imports inside the package resolve to absolute names
    names = {imported for _, imported, _ in imports_of(tmp_path / "attacks/ok.py", tmp_path)}
    assert names == {"models.public", "attacks.sub.deep", "attacks.ok"}
