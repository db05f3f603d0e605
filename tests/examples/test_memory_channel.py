"""examples/memory_channel.py: a producer feeding the stream via data_sender_callable."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


async def test_streams_every_produced_item_then_ends(example: Any) -> None:
    app = example("memory_channel").app
    with anyio.fail_after(5):
        scope = http_scope("/events", query_string="count=5&delay=0")
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = await stream.events().rest()
    assert [(e.event, e.data, e.id) for e in events] == [
        ("item", f"item {n}", str(n)) for n in range(1, 6)
    ]


async def test_client_disconnect_stops_the_producer(example: Any) -> None:
    app = example("memory_channel").app
    with anyio.fail_after(5):
        scope = http_scope("/events", query_string="count=1000&delay=0")
        async with stream_asgi(app, scope=scope) as stream:
            first = await stream.events().take(2)
            assert [e.data for e in first] == ["item 1", "item 2"]
            await stream.disconnect()
            await stream.wait_closed()  # the app returns: the producer was cancelled


@pytest.mark.parametrize("query", ["count=0", "count=abc", "delay=-1", "count=100000"])
async def test_bad_parameters_get_a_400_json(example: Any, query: str) -> None:
    app = example("memory_channel").app
    with anyio.fail_after(5):
        async with stream_asgi(app, scope=http_scope("/events", query_string=query)) as stream:
            await stream.start()
            assert stream.status_code == 400
            assert "error" in json.loads(await stream.read_all())
