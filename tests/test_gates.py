"""The static gates run as part of the test command: formatting, lint and strict typing.

Running them from pytest keeps the README's single test command complete: nobody can pass the
tests while failing the gates.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed in the test environment")
    return path


def test_ruff_format() -> None:
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint() -> None:
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run(_tool("mypy"), "--strict", "src/ssehub")
    assert result.returncode == 0, result.stdout + result.stderr


MAX_MODULE_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    # One small module per concept: past this, split it (docs/ARCHITECTURE.md, issue 17).
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "src" / "ssehub").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
