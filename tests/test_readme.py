"""The README is the first thing users run: its commands, links and Python examples must hold."""

from __future__ import annotations

import ast
import json
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


def _broker_example() -> dict[str, Any]:
    """The README's broker example, executed as written: its module namespace."""
    (source,) = [block for block in _blocks("python") if "broker = Broker()" in block]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.anyio
async def test_the_broker_example_streams_what_it_publishes() -> None:
    namespace = _broker_example()
    broker, app = namespace["broker"], namespace["app"]
    with anyio.fail_after(5):
        async with broker, stream_asgi(app, "/feed?topic=news") as stream:
            await stream.start()
            stored = await broker.publish("news", {"title": "hello"}, event="story")
            event = await stream.events().next_event()
    assert (event.id, event.event, event.data) == (stored.id, "story", '{"title":"hello"}')


async def _answer(app: Any, target: str, method: str = "GET", body: bytes = b"") -> Any:
    async with stream_asgi(app, target, method=method, body=body) as stream:
        await stream.start()
        content = await stream.read_all()
    assert stream.headers["content-type"] == "application/json", (stream.headers, content)
    return stream.status_code, json.loads(content)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/feed", "at least one topic is required"),
        ("/feed?topic=", "must not be empty"),
        ("/feed?topic=bad%20topic", "only URI characters"),
        ("/feed?topic=news&topic=a%0Ab", "only URI characters"),
        ("/feed?" + "&".join(f"topic=t{n}" for n in range(40)), "too many topics"),
    ],
)
async def test_the_broker_example_answers_400_json_for_a_bad_topic(
    target: str, reason: str
) -> None:
    namespace = _broker_example()
    broker, app = namespace["broker"], namespace["app"]
    with anyio.fail_after(5):
        async with broker:
            status, body = await _answer(app, target)
            assert broker.subscriber_count() == 0
    assert status == 400
    assert body["error"] == "invalid_topic"
    assert reason in body["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[" * 100_000, b'"\\ud800 lone surrogate"'],
    ids=["empty", "not-json", "not-utf-8", "nested", "lone-surrogate"],
)
async def test_the_broker_example_answers_400_json_for_a_bad_publish(body: bytes) -> None:
    namespace = _broker_example()
    broker, app = namespace["broker"], namespace["app"]
    with anyio.fail_after(5):
        async with broker:
            status, answer = await _answer(app, "/publish", method="POST", body=body)
            assert broker.statistics().published == 0
            # A good body still works after the bad ones.
            ok_status, ok = await _answer(app, "/publish", method="POST", body=b'{"t": 1}')
    assert (status, answer["error"]) == (400, "invalid_event"), answer
    assert answer["detail"]
    assert ok_status == 200
    assert set(ok) == {"id"}


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
