"""The package's import graph, read from its source with :mod:`ast` (imports inside functions too: a lazy
import is still a dependency). Used by the pipeline, whose stage keys hash the code a stage runs
(:func:`code_digest`), and by the structure test, which holds the layers to one direction.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """The package modules ``name`` imports (module and function level), and the outside top-level packages."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    root = name.split(".")[0]
    inside, outside = set(), set()

    def add(target: str) -> None:
        if target.split(".")[0] != root:
            outside.add(target.split(".")[0])
            return
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target != name:
            inside.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                add(sub if sub in known else module)
    return inside, outside


def graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(edges, outside)``: for each module, the package modules and the outside packages it imports."""
    known = modules(package)
    edges, outside = {}, {}
    for name, path in known.items():
        edges[name], outside[name] = imports(path, name, known)
    return edges, outside


def reached(edges: dict[str, set[str]], start: str) -> set[str]:
    """``start`` and every module it reaches by any chain of imports."""
    seen, todo = {start}, [start]
    while todo:
        for w in edges.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


@lru_cache(maxsize=1)
def _this_package() -> tuple[dict[str, set[str]], dict[str, Path]]:
    """This package's graph and modules, read once per process (every stage key needs them)."""
    return graph()[0], modules()


@lru_cache(maxsize=None)
def code_digest(*names: str) -> str:
    """The sha256 of the source of ``names`` and of every package module they reach: what a stage's key
    holds, so that changing code a stage runs reruns it, and changing other code does not."""
    edges, known = _this_package()
    files = sorted({m for name in names for m in reached(edges, name)})
    h = hashlib.sha256()
    for m in files:
        h.update(m.encode() + b"\0" + known[m].read_bytes() + b"\0")
    return h.hexdigest()
