"""examples/broadcasting.py: subscribe, broadcast through REST, count clients, resume."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from ssehub.testing import stream_asgi

pytestmark = pytest.mark.anyio


async def _post(app: Any, body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post("/send", content=content)


async def _clients(app: Any) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        count: int = (await client.get("/clients")).json()["clients"]
        return count


async def test_every_client_receives_every_broadcast(example: Any, run_lifespan: Any) -> None:
    module = example("broadcasting")
    app = module.app
    with anyio.fail_after(10):
        async with (
            run_lifespan(app),
            stream_asgi(app, "/stream") as first,
            stream_asgi(app, "/stream") as second,
        ):
            await first.start()
            await second.start()
            assert await _clients(app) == 2
            answer = await _post(app, {"message": "hello", "event": "greeting"})
            assert answer.status_code == 200
            assert answer.json()["delivered_to"] == 2
            await _post(app, {"message": "two\nlines"})
            for stream in (first, second):
                events = await stream.events().take(2)
                assert [(e.event, e.data) for e in events] == [
                    ("greeting", "hello"),
                    ("message", "two\nlines"),
                ]
                assert events[0].id == answer.json()["id"]
            await second.disconnect()
            await second.wait_closed()
            # The broker forgets a client as soon as its stream ends: nothing leaks.
            assert await _clients(app) == 1


async def test_a_reconnecting_client_gets_what_it_missed(example: Any, run_lifespan: Any) -> None:
    app = example("broadcasting").app
    with anyio.fail_after(10):
        async with run_lifespan(app):
            async with stream_asgi(app, "/stream") as stream:
                await stream.start()
                await _post(app, {"message": "seen"})
                (seen,) = await stream.events().take(1)
            await _post(app, {"message": "missed 1"})
            await _post(app, {"message": "missed 2"})
            headers = {"Last-Event-ID": seen.id}
            async with stream_asgi(app, "/stream", headers=headers) as stream:
                await stream.start()
                replayed = await stream.events().take(2)
    assert [e.data for e in replayed] == ["missed 1", "missed 2"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        ({"text": "no message key"}, 400),
        ({"message": 42}, 400),
        ({"message": "x", "event": 1}, 400),
        ({"message": "x", "event": "bad\nname"}, 400),
        (b"[" * 60_000, 400),  # deeper than Python's recursion limit: json.loads raises
        ({"message": "\ud800"}, 400),  # a lone surrogate (JSON "\ud800") is not text
        (b"\xff\xfe", 400),  # not UTF-8
        (b"x" * (64 * 1024 + 1), 413),
    ],
)
async def test_bad_messages_get_a_json_error_and_reach_nobody(
    example: Any, run_lifespan: Any, body: Any, status: int
) -> None:
    app = example("broadcasting").app
    with anyio.fail_after(10):
        async with run_lifespan(app), stream_asgi(app, "/stream") as stream:
            await stream.start()
            answer = await _post(app, body)
            assert answer.status_code == status
            assert "error" in answer.json()
            await _post(app, {"message": "after"})
            (event,) = await stream.events().take(1)
            assert event.data == "after"  # the rejected one never reached the stream
