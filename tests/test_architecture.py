"""Architecture hygiene: no import cycles between boltzflow modules, no reach-in to private names.

Every module under ``src/boltzflow`` is parsed with :mod:`ast` (imports inside functions count
too); nothing is imported.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import boltzflow

ROOT = Path(boltzflow.__file__).parent
PACKAGE = ROOT.name


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if _is_package(module) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(name: str) -> str | None:
    """The boltzflow module that defines ``name`` (itself, or its closest parent package)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def _imports() -> dict[str, list[tuple[str, int, ast.ImportFrom | None, str]]]:
    """Per module: ``(target module, line, from-node or None, imported name)`` for each import."""
    edges: dict[str, list[tuple[str, int, ast.ImportFrom | None, str]]] = {}
    for module, path in _modules().items():
        found = edges.setdefault(module, [])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE and _owner(alias.name):
                        found.append((_owner(alias.name), node.lineno, None, alias.name))
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                if source.split(".")[0] != PACKAGE or _owner(source) is None:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in _modules() else _owner(source)
                    found.append((target, node.lineno, node, alias.name))
    return edges


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, *_ in edges if t != m} for m, edges in _imports().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(c), c[0]) for c in components]


def _cycle_in(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest path ``start → … → start`` inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in no cycle")


def _where(source: str, target: str) -> str:
    line = next(n for t, n, *_ in _imports()[source] if t == target)
    return f"{_modules()[source].relative_to(ROOT.parent)}:{line}"


def test_no_import_cycles():
    cycles = _cycles(_graph())
    shown = [
        " → ".join(cycle) + "\n      " + ", ".join(_where(a, b) for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles
    ]
    assert not cycles, f"{len(cycles)} import cycle(s):\n  " + "\n  ".join(shown)


def test_no_private_names_imported_from_other_modules():
    found = []
    for module, edges in _imports().items():
        for target, line, node, name in edges:
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            if node is not None and private and target != module:
                where = _modules()[module].relative_to(ROOT.parent)
                found.append(f"{where}:{line}: from {_absolute(module, node)} import {name}")
    assert not found, "private names imported from another module:\n  " + "\n  ".join(found)
