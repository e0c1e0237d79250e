"""The package's import graph points one way.

The graph is read from the source with `ast`, imports inside functions included (a lazy import is still a
dependency: it only moves the moment it is paid). Three rules are held:

- no circle between files;
- no circle between the package's rooms, a room being a sub-package (`cli/`, `measure/`, `targets/`, ...) or a
  top-level module: a folder whose files import another folder that imports it back has an arrow running back up;
- the edge side (`measure/`, `targets/`, `runtime/`, `tflite/`, `harness.py`) reaches nothing that imports TensorFlow,
  tf_keras or tfmot, by any chain of imports; and the device harness imports nothing of the package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_edge._imports import graph as read_graph
from resnet_edge._imports import imports as _imports
from resnet_edge._imports import reached

EDGE_ROOMS = ("measure", "targets", "runtime", "tflite", "harness")
TF_TOPS = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"}


@pytest.fixture(scope="module")
def graph():
    return read_graph()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "resnet_edge"


def _why(edges, members) -> list[str]:
    return sorted(f"{a} -> {b}" for a in members for b in edges[a] if b in members)


def test_the_reader_sees_the_imports_it_must(tmp_path):
    """The graph reader itself: a lazy import inside a function is an arrow, a relative import resolves."""
    modules = {"resnet_edge": Path("x"), "resnet_edge.a": Path("a"), "resnet_edge.b": Path("b"),
               "resnet_edge.pkg": Path("p"), "resnet_edge.pkg.c": Path("c")}
    src = "import os\ndef f():\n    from resnet_edge.b import x\n    from .pkg import c\n    import tensorflow as tf\n"
    path = tmp_path / "a.py"
    path.write_text(src)
    inside, outside = _imports(path, "resnet_edge.a", modules)
    assert inside == {"resnet_edge.b", "resnet_edge.pkg.c"}
    assert outside == {"os", "tensorflow"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _chain({"a": {"b"}, "b": {"c"}, "c": set()}, "a", "c") == ["a", "b", "c"]


def test_no_import_circle_between_files(graph):
    edges, _ = graph
    found = _cycles(edges)
    assert not found, "import circles: " + "; ".join(", ".join(_why(edges, set(c))) for c in found)


def test_no_import_circle_between_rooms(graph):
    edges, _ = graph
    rooms: dict[str, set[str]] = {}
    ties: dict[tuple[str, str], str] = {}
    for a, targets in edges.items():
        for b in targets:
            ra, rb = _room(a), _room(b)
            if ra != rb:
                rooms.setdefault(ra, set()).add(rb)
                ties.setdefault((ra, rb), f"{a} -> {b}")
            rooms.setdefault(rb, set())
    found = _cycles(rooms)
    assert not found, "rooms that import each other: " + "; ".join(
        ", ".join(ties[(a, b)] for a in c for b in rooms[a] if b in c) for c in found)


def _chain(edges, start: str, end: str) -> list[str]:
    """One chain of imports from ``start`` to ``end`` (breadth first)."""
    came, todo = {start: None}, [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges[v]):
            if w not in came:
                came[w] = v
                todo.append(w)
    chain = [end]
    while came[chain[-1]] is not None:
        chain.append(came[chain[-1]])
    return chain[::-1]


def test_the_edge_side_reaches_nothing_of_tensorflow(graph):
    edges, outside = graph
    host = {m for m, tops in outside.items() if tops & TF_TOPS}
    assert "resnet_edge._tf" in host  # the reader found the one place TensorFlow is imported
    for start in sorted(m for m in edges if _room(m) in EDGE_ROOMS):
        bad = sorted(reached(edges, start) & host)
        if bad:
            pytest.fail(f"{start} reaches TensorFlow: {' -> '.join(_chain(edges, start, bad[0]))}")


def test_the_device_harness_imports_nothing_of_the_package(graph):
    edges, outside = graph
    assert edges["resnet_edge.harness"] == set()
    assert not outside["resnet_edge.harness"] & TF_TOPS
