"""The public surface: ``ssehub.__all__`` resolves, modules declare ``__all__``, and the wire core
needs nothing outside the standard library (checked statically and at run time)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ssehub

SRC = Path(ssehub.__file__).resolve().parent
# The wire core and the exception tree must run on a bare interpreter.
STDLIB_ONLY = [*sorted(SRC.glob("wire/*.py")), SRC / "_exceptions.py"]
# Modules that are not API: the version file and the ``python -m`` entry point.
NOT_API = {"__about__.py", "__main__.py"}


def _ruff_sort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 ("isort-style"): SCREAMING_CASE, then CamelCase, then everything else.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _module_all(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        if isinstance(target, ast.Name) and target.id == "__all__" and node.value is not None:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple), path
            return list(value)
    return None


@pytest.mark.parametrize("name", ssehub.__all__)
def test_every_public_name_resolves(name: str) -> None:
    # Lazy names (modules needing Starlette) are imported here too: all of them must exist.
    assert getattr(ssehub, name) is not None
    assert name in dir(ssehub)


def test_all_is_sorted_and_unique() -> None:
    names = ssehub.__all__
    assert len(names) == len(set(names))
    assert names == sorted(names, key=_ruff_sort_key)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute"):
        _ = ssehub.NoSuchThing  # type: ignore[attr-defined]


def test_core_names_are_exported() -> None:
    for name in (
        "EventSourceResponse",
        "ServerSentEvent",
        "JSONServerSentEvent",
        "SendTimeoutError",
        "EventParser",
        "MessageEvent",
        "SSEHubError",
        "EventValidationError",
        "EventTooLarge",
    ):
        assert name in ssehub.__all__


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name not in NOT_API)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_every_module_declares_a_sorted_all(path: Path) -> None:
    names = _module_all(path)
    assert names is not None, f"{path.relative_to(SRC)} has no __all__"
    assert len(names) == len(set(names))
    assert names == sorted(names, key=_ruff_sort_key)


# --------------------------------------------------------------------- stdlib-only wire


def _is_import_error_guard(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(
            isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"}
            for n in names
        ):
            return True
    return False


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import in ``tree`` and whether it sits in a ``try`` that catches ImportError."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, guarded))
        if isinstance(node, ast.Try):
            inner = guarded or _is_import_error_guard(node)
            for child in node.body:
                visit(child, inner)
            for rest in (*node.handlers, *node.orelse, *node.finalbody):
                visit(rest, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, guarded=False)
    return found


def _import_problems(path: Path) -> list[str]:
    siblings = {p.stem for p in path.parent.glob("*.py")}
    problems = []
    for node, guarded in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.parent.name}/{path.name}:{node.lineno}"
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif node.level == 0:
            modules = [node.module or ""]
        else:
            # Relative: siblings (``from .x import``, ``from . import x``) or ``.._exceptions``.
            target = node.module or ""
            if node.level == 1 and (
                target.split(".")[0] in siblings
                or (not target and all(a.name in siblings for a in node.names))
            ):
                continue
            if node.level == 2 and target == "_exceptions" and path.parent.name == "wire":
                continue
            problems.append(f"{where}: relative import {'.' * node.level}{target}")
            continue
        for module in modules:
            top = module.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top == "orjson" and guarded:
                continue
            problems.append(
                f"{where}: imports {module}" + (" (unguarded)" if top == "orjson" else "")
            )
    return problems


@pytest.mark.parametrize("path", STDLIB_ONLY, ids=lambda p: str(p.relative_to(SRC)))
def test_wire_imports_only_the_standard_library(path: Path) -> None:
    assert _import_problems(path) == []


def test_the_import_checker_catches_violations(tmp_path: Path) -> None:
    # The static check must be able to fail: feed it a module that breaks every rule.
    wire = tmp_path / "wire"
    wire.mkdir()
    (wire / "event.py").write_text("")
    bad = wire / "probe.py"
    bad.write_text(
        textwrap.dedent(
            """
            import starlette
            from anyio import sleep
            import orjson
            from ..response import EventSourceResponse
            from .event import ServerSentEvent
            from .._exceptions import SSEHubError
            from ... import something
            try:
                import httpx
            except ImportError:
                pass
            try:
                import orjson as ok
            except ImportError:
                ok = None
            def f():
                import redis
            """
        )
    )
    problems = _import_problems(bad)
    assert len(problems) == 7, problems
    assert any("orjson (unguarded)" in p for p in problems)


RUNTIME_CHECK = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class RefuseThirdParty(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top != "ssehub" and top not in sys.stdlib_module_names:
                raise ImportError(f"refused third-party import: {name}")
            return None

    sys.meta_path.insert(0, RefuseThirdParty())
    import ssehub.wire
    from ssehub.wire import EventParser, JSONServerSentEvent, ServerSentEvent

    wire = ServerSentEvent("a\\nb", event="e", id=7).encode()
    wire += JSONServerSentEvent({"k": "é"}).encode()
    events = EventParser().feed(wire)
    loaded = sorted(
        {m.partition(".")[0] for m in sys.modules}
        - set(sys.stdlib_module_names) - {"ssehub", "__main__"}
    )
    print(json.dumps({
        "events": [[e.data, e.event, e.id] for e in events],
        "third_party": loaded,
        "orjson_blocked": "orjson" not in sys.modules,
    }))
    """
)


def test_wire_runs_with_every_third_party_import_refused() -> None:
    result = subprocess.run(
        # -I: no user site, no PYTHON* variables, so nothing else gets imported first.
        [sys.executable, "-I", "-c", RUNTIME_CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == [["a\nb", "e", "7"], ['{"k":"é"}', "message", "7"]]
    assert report["third_party"] == []
    assert report["orjson_blocked"]
