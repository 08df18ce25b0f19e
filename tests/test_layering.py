"""The package's import structure, read from the source with ``ast`` (DESIGN.md, Layout).

Imports point down: ``workflows`` -> ``pipeline`` -> ``runtimes`` -> ``qprogram``/``ir`` -> ``errors``;
``torch`` (QAT) sits beside ``workflows``. No module imports another module's ``_private`` name, and the
modules import one another without a cycle. Imports inside functions count for the layers and the
private names (they are dependencies all the same), not for cycles (they run after loading).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeopt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _owner(name: str) -> str | None:
    """The module of ``name`` (a module, or a name inside one), or None outside the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> Iterator[tuple[str, str | None, bool]]:
    """``(imported module, imported name or None, at module level)`` for each edgeopt import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    top |= {id(n) for b in tree.body if isinstance(b, (ast.If, ast.Try)) for n in ast.walk(b)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("edgeopt"):
                    yield alias.name, None, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            if base.startswith("edgeopt"):
                for alias in node.names:
                    yield base, alias.name, id(node) in top


def _edges(module_level_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for base, name, at_top in _imports(module):
            if module_level_only and not at_top:
                continue
            target = _owner(f"{base}.{name}" if name and f"{base}.{name}" in MODULES else base)
            if target and target != module:
                edges[module].add(target)
    return edges


def _in(module: str, layer: str) -> bool:
    return module == f"edgeopt.{layer}" or module.startswith(f"edgeopt.{layer}.")


@pytest.mark.parametrize("layer, forbidden", [
    ("runtimes", ("pipeline", "workflows", "torch")),
    ("pipeline", ("workflows", "torch")),
    ("qprogram", ("pipeline", "workflows", "torch", "runtimes")),
    ("ir", ("pipeline", "workflows", "torch", "runtimes")),
])
def test_imports_point_down(layer: str, forbidden: tuple[str, ...]) -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in _edges(module_level_only=False).items() if _in(a, layer)
                    for b in targets if any(_in(b, f) for f in forbidden))
    assert upward == []


def test_no_private_name_crosses_modules() -> None:
    crossing = sorted(f"{module} <- {base}.{name}" for module in MODULES for base, name, _ in _imports(module)
                      if name and name.startswith("_") and not name.startswith("__") and _owner(base) != module)
    assert crossing == []


def test_no_import_cycle() -> None:
    # A package's __init__ importing its own submodules (to fill a registry) is no cycle.
    edges = {a: {b for b in bs if not (b.startswith(a + ".") and MODULES[a].name == "__init__.py")}
             for a, bs in _edges(module_level_only=True).items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert cycles == []


def test_pipeline_holds_stages_only() -> None:
    """``pipeline/`` keeps stage packages and a few stage modules; what the CLI calls lives in ``workflows/``."""
    loose = sorted(p.name for p in (PACKAGE / "pipeline").glob("*.py") if p.name != "__init__.py")
    assert loose == ["calibrate.py", "evaluate.py", "place.py", "target.py"]
