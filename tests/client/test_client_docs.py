"""docs/client.md must hold: Python that compiles, links that exist, real options and names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ssehub
import ssehub.client
from ssehub.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = (ROOT / "docs" / "client.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_compile(index: int) -> None:
    # Some examples use top-level `async with`, as typed in an async REPL.
    compile(_blocks("python")[index], "client.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\]\(((?!https?:|#)[^)]+)\)", DOC))))
def test_relative_links_exist(target: str) -> None:
    assert (ROOT / "docs" / target).exists(), f"docs/client.md links to missing {target}"


def _options(command: str) -> set[str]:
    parser = build_parser()
    actions = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    return {opt for action in actions[command]._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", ["publish", "listen", "status"])
def test_documented_options_exist(command: str) -> None:
    section = DOC.split(f"### `ssehub {command}")[1].split("\n### ")[0].split("\n## ")[0]
    # Options of other programs in the examples (`tail -f`) are not ours.
    documented = set(re.findall(r"(?<![\w-])(?<!tail )(--?[a-z][a-z-]*)", section))
    assert documented, f"no options documented for {command}"
    assert documented <= _options(command), documented - _options(command)


def test_documented_names_exist() -> None:
    # Exception and class names given as `ssehub.Name` are exported by the package.
    for name in re.findall(r"`ssehub\.([A-Z][A-Za-z]+)`", DOC):
        assert hasattr(ssehub, name), name
    for name in ("AsyncEventSource", "EventSource", "ReconnectPolicy", "RETRYABLE_STATUSES"):
        assert f"`{name}" in DOC or f" {name}" in DOC
        assert hasattr(ssehub.client, name)
