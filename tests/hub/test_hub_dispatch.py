"""``GET /events`` through the hub's dispatcher answers exactly as through Starlette's stack.

Each case runs one request twice: against ``create_app()`` as built (the dispatcher answers
``/events``) and against the same app with a pass-through middleware added (which sends
``/events`` through the whole stack again, as any change to the app does). Status, headers and
the first body chunk must be identical, and so must what the policies record (metrics, the
connection limits through trusted proxies, the request id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from ssehub import Broker
from ssehub.hub import HubSettings, create_app
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


class PassThrough:
    """A middleware that changes nothing (as Sentry's or a request logger's would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@asynccontextmanager
async def both(settings: HubSettings) -> AsyncIterator[tuple[Starlette, Starlette]]:
    """The hub as built (dispatcher) and the hub with a middleware added (stack)."""
    fast, stacked = create_app(settings), create_app(settings)
    stacked.add_middleware(PassThrough)
    assert fast.dispatches_events()  # type: ignore[attr-defined]
    assert not stacked.dispatches_events()  # type: ignore[attr-defined]
    async with fast.router.lifespan_context(fast), stacked.router.lifespan_context(stacked):
        yield fast, stacked


async def answer(
    app: ASGIApp, query: str = "topic=news", method: str = "GET", **headers: str
) -> tuple[int | None, list[tuple[bytes, bytes]], bytes | None]:
    """Status, raw headers and the first body chunk of one request (then disconnect)."""
    headers.setdefault("x-request-id", "fixed-id")
    scope = http_scope("/events", method=method, query_string=query, headers=headers)
    async with stream_asgi(app, scope=scope) as stream:
        with anyio.fail_after(5):
            await stream.start()
            first = await stream.receive_chunk()
        raw = list(stream.headers.raw)
    return stream.status_code, raw, first


async def same_answer(
    apps: tuple[Starlette, Starlette], query: str = "topic=news", method: str = "GET", **h: str
) -> tuple[int | None, list[tuple[bytes, bytes]], bytes | None]:
    fast, stacked = apps
    got = await answer(fast, query, method, **h)
    assert got == await answer(stacked, query, method, **h)
    return got


async def test_a_stream_and_head_and_a_bad_topic_answer_alike() -> None:
    async with both(HubSettings()) as apps:
        status, headers, first = await same_answer(apps)
        assert status == 200
        assert first is not None
        assert first.startswith(b": ok")
        assert (b"x-request-id", b"fixed-id") in headers
        status, _, first = await same_answer(apps, method="HEAD")
        assert (status, first) == (200, b"")
        status, headers, body = await same_answer(apps, "topic=a%20b")
        assert status == 400
        assert b"invalid_topic" in (body or b"")


async def test_authentication_and_cors_apply_alike(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("s3cret-s3cret-s3cret news\n")
    settings = HubSettings(
        auth="api_key", api_keys_file=str(keys), cors_origins=("https://app.example",)
    )
    origin = {"origin": "https://app.example"}
    async with both(settings) as apps:
        status, headers, body = await same_answer(apps, **origin)
        assert status == 401
        assert b"unauthorized" in (body or b"")
        assert (b"access-control-allow-origin", b"https://app.example") in headers
        status, _, _ = await same_answer(apps, authorization="Bearer wrong")
        assert status == 401
        status, headers, _ = await same_answer(
            apps, authorization="Bearer s3cret-s3cret-s3cret", **origin
        )
        assert status == 200
        assert (b"access-control-allow-credentials", b"true") in headers
        assert (b"vary", b"Origin") in headers
        status, _, _ = await same_answer(
            apps, "topic=other", authorization="Bearer s3cret-s3cret-s3cret"
        )
        assert status == 403


async def test_trusted_proxies_decide_the_address_the_limits_count() -> None:
    # One stream per address: two clients behind the proxy are two addresses, not one.
    settings = HubSettings(max_connections_per_address=1, trusted_proxies=("127.0.0.1",))
    async with both(settings) as (fast, stacked):
        for app in (fast, stacked):
            first = http_scope("/events?topic=news", headers={"x-forwarded-for": "203.0.113.1"})
            async with stream_asgi(app, scope=first) as one:
                await one.start()
                assert one.status_code == 200
                status, _, _ = await answer(app, **{"x-forwarded-for": "203.0.113.2"})
                assert status == 200
                status, _, _ = await answer(app, **{"x-forwarded-for": "203.0.113.1"})
                assert status == 429


async def scrape(app: ASGIApp) -> list[str]:
    """The request and stream metrics (not those of the scrapes themselves)."""
    async with stream_asgi(app, scope=http_scope("/metrics")) as metrics:
        text = (await metrics.read_all()).decode()
    wanted = ("ssehub_http_requests_total{", "ssehub_open_connections", "ssehub_connections")
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith(wanted) and "/metrics" not in line and "_created" not in line
    )


async def test_metrics_count_dispatched_streams_as_the_stack_does() -> None:
    async with both(HubSettings(metrics=True)) as apps:
        seen = []
        for app in apps:
            async with stream_asgi(app, scope=http_scope("/events?topic=news")) as stream:
                await stream.start()
                while_open = await scrape(app)
            closed = await scrape(app)
            await answer(app, "topic=a%20b")
            seen.append((while_open, closed, await scrape(app)))
        assert seen[0] == seen[1]
        while_open, closed, after = seen[0]
        assert "ssehub_open_connections 1.0" in while_open
        assert "ssehub_open_connections 0.0" in closed
        assert any('route="/events"' in line and 'status="200"' in line for line in after)
        assert any('route="/events"' in line and 'status="400"' in line for line in after)


async def test_an_unexpected_error_is_a_bare_500_and_raised_as_through_the_stack() -> None:
    class Failing(Broker):
        def subscribe(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    async with Failing("memory://") as one, Failing("memory://") as two:
        fast, stacked = create_app(HubSettings(), broker=one), create_app(HubSettings(), broker=two)
        stacked.add_middleware(PassThrough)
        for app in (fast, stacked):
            scope = http_scope("/events?topic=news")
            async with stream_asgi(app, scope=scope) as stream:
                with anyio.fail_after(5):
                    await stream.start()
                    body = await stream.read_all()
                assert (stream.status_code, body) == (500, b"Internal Server Error")
                assert b"x-request-id" not in dict(stream.headers.raw)  # outside the policies
                with pytest.raises(RuntimeError, match="boom"):
                    await stream.wait_closed()


async def test_the_dispatcher_steps_aside_in_debug_and_serves_a_mounted_hub() -> None:
    hub = create_app(HubSettings())
    outer = Starlette(routes=[Mount("/sse", app=hub)], lifespan=hub.router.lifespan_context)
    async with outer.router.lifespan_context(outer):
        assert hub.dispatches_events()  # type: ignore[attr-defined]
        scope = http_scope("/sse/events?topic=news")
        async with stream_asgi(outer, scope=scope) as stream:
            with anyio.fail_after(5):
                await stream.start()
                chunk = await stream.receive_chunk()
            assert stream.status_code == 200
            assert (chunk or b"").startswith(b": ok")
        assert hub.middleware_stack is None  # Starlette's stack never ran: dispatched
        hub.debug = True
        assert not hub.dispatches_events()  # type: ignore[attr-defined]


async def test_the_mercure_hub_beside_it_keeps_the_events_shortcut() -> None:
    settings = HubSettings(mercure=True, mercure_jwt_key="k" * 32)
    hub = create_app(settings)
    assert hub.dispatches_events()  # type: ignore[attr-defined]
    async with hub.router.lifespan_context(hub):
        status, _, first = await answer(hub)
        assert status == 200
        assert (first or b"").startswith(b": ok")
        assert hub.middleware_stack is None  # answered by the dispatcher


MERCURE = HubSettings(mercure=True, mercure_jwt_key="k" * 32, mercure_anonymous=True)


async def mercure_answer(
    app: ASGIApp, method: str = "GET", query: str = "topic=a", body: bytes = b"", **headers: str
) -> tuple[int | None, list[tuple[bytes, bytes]], bytes | None]:
    headers.setdefault("x-request-id", "fixed-id")
    scope = http_scope("/.well-known/mercure", method=method, query_string=query, headers=headers)
    async with stream_asgi(app, scope=scope, body=body) as stream:
        with anyio.fail_after(5):
            await stream.start()
            first = await stream.receive_chunk()
        raw = list(stream.headers.raw)
    return stream.status_code, raw, first


async def test_mercure_requests_answer_alike_through_the_dispatcher() -> None:
    async with both(MERCURE) as (fast, stacked):
        form = {"content-type": "application/x-www-form-urlencoded"}
        cases: list[dict[str, Any]] = [
            {},  # an anonymous subscriber
            {"query": "topic=a&topic=https://example.com/books/{id}"},
            {"query": ""},  # no topic: 400
            {"method": "POST", "body": b"topic=a&data=x", **form},  # no token: 401
            {"method": "PUT"},  # 405
        ]
        for case in cases:
            got = await mercure_answer(fast, **case)
            assert got == await mercure_answer(stacked, **case), case
            assert (b"x-request-id", b"fixed-id") in got[1]
        assert fast.middleware_stack is None  # every request above was dispatched
        # /events still takes the dispatcher, with the hub's own policies.
        status, _, first = await answer(fast)
        assert status == 200
        assert (first or b"").startswith(b": ok")
