"""Limits (SSE-SPEC cases 25, 28, 29): 429 with no stream opened, 400/413 with nothing published."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import anyio
import pytest
from starlette.applications import Starlette

from ssehub.broker import Broker
from ssehub.hub import HubSettings, create_app
from ssehub.testing import ASGIStream, ManualClock, http_scope, stream_asgi

from .support import (
    assert_error,
    bearer,
    client_for,
    history_size,
    jwt_settings,
    running_hub,
    token,
)

pytestmark = pytest.mark.anyio


async def _open(stack: AsyncExitStack, app: Starlette, scope: dict[str, object]) -> ASGIStream:
    stream = await stack.enter_async_context(stream_asgi(app, scope=scope))
    await stream.start()
    return stream


async def _refused(app: Starlette, scope: dict[str, object], code: str) -> None:
    async with stream_asgi(app, scope=scope) as stream:
        await stream.start()
        assert stream.status_code == 429
        assert stream.headers["retry-after"]
        assert json.loads(await stream.read_all())["error"] == code


def _scope(address: str = "127.0.0.1", **headers: str) -> dict[str, object]:
    return http_scope("/events", query_string="topic=t", headers=headers, client=(address, 5000))


async def test_connections_per_address() -> None:
    async with running_hub(HubSettings(max_connections_per_address=2)) as app:
        broker = app.state.hub.broker
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                for _ in range(2):
                    assert (await _open(stack, app, _scope())).status_code == 200
                await _refused(app, _scope(), "too_many_connections")
                assert broker.statistics().subscribers == 2  # the refused one never subscribed
                # Another address is not affected.
                assert (await _open(stack, app, _scope("10.0.0.7"))).status_code == 200
            # Places are given back when streams end.
            async with AsyncExitStack() as stack:
                assert (await _open(stack, app, _scope())).status_code == 200
        assert app.state.hub.guard.connections.open == 0


async def test_total_connections() -> None:
    async with running_hub(HubSettings(max_connections=3)) as app:
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                for n in range(3):
                    await _open(stack, app, _scope(f"10.0.0.{n}"))
                await _refused(app, _scope("10.0.0.99"), "too_many_connections")


async def test_connections_per_token() -> None:
    settings = jwt_settings(max_connections_per_token=2)
    credential = token(subscribe=["t"])
    async with running_hub(settings) as app:
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                for n in range(2):
                    await _open(
                        stack, app, _scope(f"10.0.0.{n}", authorization=f"Bearer {credential}")
                    )
                await _refused(
                    app,
                    _scope("10.0.0.50", authorization=f"Bearer {credential}"),
                    "too_many_connections",
                )
                # Another token still gets in.
                other = token(subscribe=["t"], sub="someone-else")
                await _open(stack, app, _scope("10.0.0.51", authorization=f"Bearer {other}"))


async def test_head_requests_take_no_place() -> None:
    async with running_hub(HubSettings(max_connections=1)) as app, client_for(app) as http:
        for _ in range(3):
            assert (await http.head("/events?topic=t")).status_code == 200
        assert app.state.hub.guard.connections.open == 0


@pytest.mark.parametrize(
    ("value", "status"),
    [("x" * 10_000, 400), ("a\rb", 200), ("\u00e9t\u00e9", 200), ("x" * 256, 200)],
)
async def test_last_event_id_bounds(value: str, status: int) -> None:
    # A 10 KB id is refused before the history is consulted; CR or non-ASCII ids are ignored
    # (reset, never reflected). Latin-1 is what an ASGI header can carry.
    async with running_hub() as app:
        scope = http_scope("/events", query_string="topic=t")
        scope["headers"].append((b"last-event-id", value.encode("latin-1", "replace")))  # type: ignore[union-attr]
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == status
            if status == 400:
                body = json.loads(await stream.read_all())
                assert body["error"] == "last_event_id_too_long"
            else:
                assert stream.headers["ssehub-reset"] == "malformed"
                event = await stream.events().next_event()
                assert event.event == "ssehub.reset"
                assert value not in event.data


async def test_topic_length_limit() -> None:
    async with running_hub(HubSettings(max_topic_length=8)) as app, client_for(app) as http:
        assert_error(
            await http.post("/publish", json={"topic": "x" * 9, "data": 1}), 400, "invalid_topic"
        )
        assert_error(await http.get("/events?topic=" + "x" * 9), 400, "invalid_topic")
        assert (await http.post("/publish", json={"topic": "x" * 8, "data": 1})).status_code == 200


async def test_body_and_batch_limits_publish_nothing() -> None:
    async with (
        running_hub(HubSettings(max_body_size=100, max_batch=2)) as app,
        client_for(app) as http,
    ):
        big = {"topic": "t", "data": "x" * 200}
        assert_error(await http.post("/publish", json=big), 413, "body_too_large")
        batch = [{"topic": "t", "data": n} for n in range(3)]
        assert_error(await http.post("/publish", json=batch), 413, "too_many_events")
        too_many = {"topics": [f"t{n}" for n in range(40)], "data": 1}
        response = await http.post(
            "/publish", content=json.dumps(too_many), headers={"content-type": "application/json"}
        )
        assert response.status_code in {400, 413}
        assert await history_size(app, "t") == 0


async def test_publish_rate_per_token_with_the_broker_clock() -> None:
    clock = ManualClock()
    settings = jwt_settings(publish_rate=10.0, publish_burst=5)
    async with Broker(clock=clock) as broker:
        app = create_app(settings, broker=broker)
        async with client_for(app) as http:
            credential = bearer(token(["*"]))
            batch = [{"topic": "t", "data": n} for n in range(5)]
            assert (await http.post("/publish", json=batch, headers=credential)).status_code == 200
            response = await http.post(
                "/publish", json={"topic": "t", "data": 6}, headers=credential
            )
            assert_error(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
            # Another token has its own bucket.
            other = bearer(token(["*"], sub="other"))
            assert (
                await http.post("/publish", json={"topic": "t", "data": 7}, headers=other)
            ).status_code == 200
            assert (await broker.backend.history_sizes(["t"]))["t"] == 6
            clock.advance(0.1)  # one event's worth refilled
            assert (
                await http.post("/publish", json={"topic": "t", "data": 8}, headers=credential)
            ).status_code == 200
            # A batch larger than the burst can never pass: 429 with a long Retry-After.
            big = [{"topic": "t", "data": n} for n in range(6)]
            clock.advance(10)
            response = await http.post("/publish", json=big, headers=credential)
            assert_error(response, 429, "rate_limited")


async def test_publish_rate_per_address_without_auth() -> None:
    clock = ManualClock()
    async with Broker(clock=clock) as broker:
        app = create_app(HubSettings(publish_rate=1.0, publish_burst=1), broker=broker)
        async with client_for(app) as http:
            assert (await http.post("/publish", json={"topic": "t", "data": 1})).status_code == 200
            assert_error(
                await http.post("/publish", json={"topic": "t", "data": 2}), 429, "rate_limited"
            )
            clock.advance(1)
            assert (await http.post("/publish", json={"topic": "t", "data": 3})).status_code == 200
