"""examples/fastapi_app.py: typed pydantic events from a FastAPI route, negotiation errors."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from ssehub.protocols import ProtocolClient
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


async def test_price_stream_is_typed_and_ends(example: Any) -> None:
    module = example("fastapi_app")
    client = ProtocolClient(module.PRICES)
    with anyio.fail_after(10):
        scope = http_scope(
            "/prices",
            headers=client.request_headers(),
            query_string="symbol=XYZ&count=4&interval=0",
        )
        async with stream_asgi(module.app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = await stream.events().rest()
    typed = [t for e in events for t in client.feed(e)]
    assert client.handshake is not None
    assert [t.payload.sequence for t in typed] == [1, 2, 3, 4]
    assert all(isinstance(t.payload, module.PriceTick) for t in typed)
    assert {t.payload.symbol for t in typed} == {"XYZ"}
    assert [t.id for t in typed] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({"x-protocol-version": "2"}, "", 406),
        ({}, "count=0", 422),  # FastAPI's own validation of query parameters
    ],
)
async def test_errors_are_json(
    example: Any, headers: dict[str, str], query: str, status: int
) -> None:
    app = example("fastapi_app").app
    with anyio.fail_after(10):
        scope = http_scope("/prices", headers=headers, query_string=query)
        async with stream_asgi(app, scope=scope) as response:
            await response.start()
            assert response.status_code == status
            body = json.loads(await response.read_all())
    if status == 406:
        assert body["available"]["protocols"][0]["versions"] == ["1"]


async def test_browser_gets_a_protocol_error_event(example: Any) -> None:
    app = example("fastapi_app").app
    with anyio.fail_after(10):
        scope = http_scope("/prices", query_string="protocol_version=9")
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == 200
            [event] = await stream.events().rest()
    assert event.event == "protocol.error"


async def test_openapi_declares_the_event_stream(example: Any) -> None:
    app = example("fastapi_app").app
    with anyio.fail_after(10):
        async with stream_asgi(app, scope=http_scope("/openapi.json")) as response:
            schema = json.loads(await response.read_all())
    assert "text/event-stream" in schema["paths"]["/prices"]["get"]["responses"]["200"]["content"]
    with anyio.fail_after(10):
        async with stream_asgi(app, scope=http_scope("/health")) as response:
            assert json.loads(await response.read_all()) == {"status": "ok"}
