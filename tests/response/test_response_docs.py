"""docs/response.md stays true: its examples compile and its table lists every parameter."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from ssehub import EventSourceResponse

DOC = (Path(__file__).resolve().parents[2] / "docs" / "response.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", DOC))))
def test_python_examples_compile(index: int) -> None:
    block = re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL)[index]
    compile(block, "docs/response.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_every_parameter_is_in_the_table() -> None:
    documented = set(re.findall(r"^\| `(\w+)` \|", DOC, flags=re.MULTILINE))
    parameters = set(inspect.signature(EventSourceResponse.__init__).parameters) - {"self"}
    assert parameters <= documented, parameters - documented
