"""The README is the first thing users run: its commands, links and Python examples must hold."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ssehub.testing import stream_asgi

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_the_two_commands_come_first() -> None:
    first = _blocks("console")[0].splitlines()
    assert len(first) == 2, first
    assert first[0].startswith("uv run ssehub serve")
    assert first[1].startswith("uv run --group dev pytest")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _blocks("console")[0].splitlines()[1].split("#")[0].strip()
    last_line = [line for line in CI.splitlines() if line.strip()][-1]
    assert last_line.strip() == command


@pytest.mark.parametrize(
    "target",
    sorted(set(re.findall(r"\]\(((?!https?:|#)[^)]+)\)", README))),
)
def test_relative_links_exist(target: str) -> None:
    assert (ROOT / target).exists(), f"README links to missing {target}"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_compile(index: int) -> None:
    # Some examples use top-level `async with`, as typed in an async REPL.
    compile(_blocks("python")[index], "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.anyio
async def test_the_broker_example_streams_what_it_publishes() -> None:
    (source,) = [block for block in _blocks("python") if "broker = Broker()" in block]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    broker, app = namespace["broker"], namespace["app"]
    with anyio.fail_after(5):
        async with broker, stream_asgi(app, "/feed?topic=news") as stream:
            await stream.start()
            stored = await broker.publish("news", {"title": "hello"}, event="story")
            event = await stream.events().next_event()
    assert (event.id, event.event, event.data) == (stored.id, "story", '{"title":"hello"}')


@pytest.mark.anyio
async def test_the_fastapi_example_streams_json_ticks() -> None:
    (source,) = [block for block in _blocks("python") if "FastAPI()" in block]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    with anyio.fail_after(5):
        async with stream_asgi(namespace["app"], "/ticks") as stream:
            await stream.start()
            event = await stream.events().next_event()
    assert (event.event, event.data, event.id) == ("tick", '{"n":0}', "0")


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssehub", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ssehub ")
