"""The hub's modules import each other in one direction only (no cycles, not even for types).

A cycle (``_app`` importing ``_channels`` for its routes while ``_channels`` imports ``_app``
for ``HubState``, once hidden behind ``TYPE_CHECKING``) makes the order of imports matter and
the modules impossible to read or test alone. ``HubState`` lives in ``_state``; the app that
assembles everything, ``_app``, is at the top of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ssehub.hub

HUB = Path(ssehub.hub.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """Sibling modules that ``path`` imports, at run time or for types."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:  # from . import x
                names.update(alias.name for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in HUB.glob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_hub_modules_import_without_cycles() -> None:
    graph = _graph()
    assert "_channels" in graph["_app"]  # the check sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
