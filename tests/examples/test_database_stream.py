"""examples/database_stream.py: table rows as events, resume by row id, wake on insert.

asyncio only: aiosqlite runs SQLite in a thread and hands results back through asyncio futures,
and SQLAlchemy's async engine is built on asyncio's greenlet bridge; neither works under trio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring: aiosqlite and SQLAlchemy async need asyncio


def make_app(example: Any, tmp_path: Path) -> Any:
    module = example("database_stream")
    return module, module.create_app(f"sqlite+aiosqlite:///{tmp_path / 'messages.db'}")


async def post(app: Any, state: dict[str, Any], body: Any) -> tuple[int, Any]:
    scope = http_scope("/messages", method="POST", state=dict(state))
    async with stream_asgi(app, scope=scope, body=json.dumps(body).encode()) as response:
        await response.start()
        return response.status_code or 0, json.loads(await response.read_all())


async def test_rows_then_live_rows_then_resume(
    example: Any, tmp_path: Path, run_lifespan: Any
) -> None:
    module, app = make_app(example, tmp_path)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            for text in ("one", "two"):
                assert (await post(app, state, {"text": text}))[0] == 201
            async with stream_asgi(app, scope=http_scope("/stream", state=dict(state))) as stream:
                collector = stream.events()
                stored = await collector.take(2)
                assert [module.MESSAGES.decode(e).payload.text for e in stored] == ["one", "two"]
                # The stream now waits on the insert signal; a new row wakes it.
                status, body = await post(app, state, {"text": "three"})
                assert (status, body) == (201, {"id": 3})
                live = await collector.next_event()
                assert (live.event, live.id) == ("message.created", "3")
                assert module.MESSAGES.decode(live).payload == module.MessageCreated(3, "three")
            headers = {"last-event-id": "2"}
            scope = http_scope("/stream", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as resumed:
                [again] = await resumed.events().take(1)
                assert again.id == "3"  # only the rows after Last-Event-ID


async def test_more_rows_than_a_page(example: Any, tmp_path: Path, run_lifespan: Any) -> None:
    module, app = make_app(example, tmp_path)
    with anyio.fail_after(20):
        async with run_lifespan(app) as state:
            async with state["sessions"]() as session, session.begin():
                session.add_all([module.Message(text=f"m{i}") for i in range(module.PAGE + 5)])
            async with stream_asgi(app, scope=http_scope("/stream", state=dict(state))) as stream:
                events = await stream.events().take(module.PAGE + 5)
    assert [int(e.id) for e in events] == list(range(1, module.PAGE + 6))


@pytest.mark.parametrize(
    ("body", "headers", "path"),
    [
        ({"nope": 1}, {}, "/messages"),
        ({"text": ""}, {}, "/messages"),
        ("just text", {}, "/messages"),
        ({"text": "\ud800"}, {}, "/messages"),  # a lone surrogate: SQLite cannot store it
        (b"[" * 60_000, {}, "/messages"),  # deeper than Python's recursion limit
        (b"\xff\xfe", {}, "/messages"),  # not UTF-8
        (None, {"last-event-id": "abc"}, "/stream"),
        # str.isdigit() accepts these (header bytes 0xB2, 0xB9, 0xB3 decode as Latin-1) but
        # int() refuses them: they must get a 400, not a 200 and a crash in the generator.
        (None, {"last-event-id": "\u00b2"}, "/stream"),
        (None, {"last-event-id": "\u00b9"}, "/stream"),
        (None, {"last-event-id": "1\u00b3"}, "/stream"),
        (None, {"last-event-id": "1" * 19}, "/stream"),
        (None, {"last-event-id": "-1"}, "/stream"),
        (None, {"last-event-id": "+1"}, "/stream"),
        (None, {"last-event-id": " 1"}, "/stream"),
    ],
)
async def test_bad_input_gets_400(
    example: Any,
    tmp_path: Path,
    run_lifespan: Any,
    body: Any,
    headers: dict[str, str],
    path: str,
) -> None:
    _, app = make_app(example, tmp_path)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            method = "POST" if body is not None else "GET"
            scope = http_scope(path, method=method, headers=headers, state=dict(state))
            if body is None:
                payload = b""
            elif isinstance(body, bytes):
                payload = body  # sent as it is: not JSON, or more nested than json.dumps takes
            else:
                payload = json.dumps(body).encode()
            async with stream_asgi(app, scope=scope, body=payload) as response:
                await response.start()
                assert response.status_code == 400
                assert "error" in json.loads(await response.read_all())
