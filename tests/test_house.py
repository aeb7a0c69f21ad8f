"""The house (README, "How it is built"): read from the package's own imports, function-local ones included.

No import circles; no module imports a package face (``mlx_mimi``, ``mlx_mimi.cli``, ...: a face re-exports, so
importing it from below runs back up; ``cli/__main__`` runs the CLI's face, it is the top); no function-local
import of a package module hides an edge (only the package face's lazy ``train_heads``/``nine_codebooks``); one
module, schedule.py, asks which device MLX runs on.
``floors()`` is what the README's module map is drawn from (``python tests/test_house.py`` prints it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlx_mimi"


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = modules()
FACES = {name for name, f in MODULES.items() if f.name == "__init__.py"}


def _targets(name: str, node: ast.AST) -> list[str]:
    """Package modules an import node reaches (``from . import x`` reaches the submodule x where there is one)."""
    out = []
    if isinstance(node, ast.ImportFrom):
        base = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            full = f"{target}.{alias.name}"
            out.append(full if full in MODULES else target)
    elif isinstance(node, ast.Import):
        out += [a.name for a in node.names]
    return [t for t in out if t in MODULES and t != name]


def imports(local: bool | None = None) -> dict[str, set[str]]:
    """module -> package modules it imports (``local``: True only function-local ones, False only top-level)."""
    graph = {}
    for name, f in MODULES.items():
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                is_local = id(node) not in top
                if local is None or local == is_local:
                    edges.update(_targets(name, node))
        graph[name] = edges
    return graph


def floors() -> dict[str, int]:
    """Floor of each module: 0 for one that imports no package module, else one above the highest it imports
    (package faces, which only re-export, are left out)."""
    graph = {n: {t for t in e if t not in FACES} for n, e in imports().items() if n not in FACES}
    memo: dict[str, int] = {}

    def floor(n: str, path: tuple = ()) -> int:
        if n in path:
            raise AssertionError(f"import circle: {' -> '.join((*path, n))}")
        if n not in memo:
            memo[n] = 1 + max((floor(t, (*path, n)) for t in graph[n]), default=-1)
        return memo[n]

    return {n: floor(n) for n in graph}


def test_no_import_circles():
    floors()  # raises on a circle, function-local imports included


def test_nothing_imports_a_package_face_from_below():
    below = [n for n in imports() if n not in FACES and not n.endswith("__main__")]  # __main__ runs the face
    up = [(n, t) for n in below for t in imports()[n] if t in FACES]
    assert not up, up


def test_no_function_local_imports_of_package_modules():
    hidden = {n: sorted(e) for n, e in imports(local=True).items() if e and n != "mlx_mimi"}
    assert not hidden, hidden


def test_one_module_asks_for_the_device():
    asking = sorted(n for n, f in MODULES.items() if "default_device()" in f.read_text())
    assert asking == ["mlx_mimi.schedule"], asking


def test_every_module_says_what_it_owns():
    for name, f in MODULES.items():
        doc = ast.get_docstring(ast.parse(f.read_text()))
        assert doc and doc.strip(), f"{name} has no docstring"


if __name__ == "__main__":
    by_floor: dict[int, list[str]] = {}
    for name, level in floors().items():
        by_floor.setdefault(level, []).append(name.removeprefix("mlx_mimi."))
    lines = {n: len(f.read_text().splitlines()) for n, f in MODULES.items()}
    for level in sorted(by_floor):
        rooms = ", ".join(f"{n} ({lines['mlx_mimi.' + n if n != 'mlx_mimi' else n]})" for n in sorted(by_floor[level]))
        print(f"floor {level}: {rooms}")
    total = sum(lines.values())
    print(f"{len(MODULES)} modules ({len(FACES)} package faces), {max(by_floor) + 1} floors, {total} lines")
