"""ssehub.testing: the streaming ASGI driver and the event collector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ssehub import testing
from ssehub._clock import ManualClock
from ssehub.response import EventSourceResponse
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


def test_exports() -> None:
    assert testing.ManualClock is ManualClock
    assert set(testing.__all__) == {
        "ASGIStream",
        "EventCollector",
        "ManualClock",
        "drain_listener",
        "http_scope",
        "stream_asgi",
    }


def test_http_scope() -> None:
    scope = http_scope("/x", method="post", headers={"X-A": "1"}, query_string="a=1", state={1: 2})
    assert scope["method"] == "POST"
    assert scope["path"] == "/x"
    assert scope["headers"] == [(b"x-a", b"1")]
    assert scope["query_string"] == b"a=1"
    assert scope["state"] == {1: 2}


async def test_request_body_then_disconnect_are_scripted() -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        received.append(await receive())

    with anyio.fail_after(5):
        async with stream_asgi(app, method="POST", body=b"payload") as stream:
            await stream.start()
            assert stream.status_code == 204
            assert await stream.read_all() == b""
            assert stream.complete
            await stream.disconnect()
            await stream.wait_closed()
    assert received == [
        {"type": "http.request", "body": b"payload", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_collector_take_times_out_and_reports_end_of_stream() -> None:
    gate = anyio.Event()

    async def gen() -> AsyncIterator[str]:
        yield "one"
        await gate.wait()

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            events = stream.events()
            assert stream.events() is events
            with pytest.raises(TimeoutError):
                await events.take(2, timeout=0.05)
            gate.set()
            with pytest.raises(anyio.EndOfStream):
                await events.next_event()
            assert [e.data for e in events.received] == ["one"]


async def test_app_errors_are_reraised_on_exit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("nope")

    async def run() -> None:
        async with stream_asgi(app) as stream:
            with pytest.raises(AssertionError, match="without starting"):
                await stream.start()

    with anyio.fail_after(5), pytest.raises(LookupError, match="nope"):
        await run()


async def test_exit_disconnects_a_running_stream() -> None:
    finally_runs: list[str] = []

    async def gen() -> AsyncIterator[str]:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            finally_runs.append("finally")

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            await stream.events().next_event()
    assert stream.app_done
    assert finally_runs == ["finally"]


def test_http_scope_splits_a_query_off_the_path() -> None:
    scope = http_scope("/events?topic=a&topic=b")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == (
        "/events",
        b"/events",
        b"topic=a&topic=b",
    )
    with pytest.raises(ValueError, match="not both"):
        http_scope("/events?topic=a", query_string="topic=b")


async def test_manual_clock_forgets_a_cancelled_sleeper() -> None:
    clock = ManualClock()
    woken: list[float] = []

    async def sleep(until: float) -> None:
        await clock.sleep_until(until)
        woken.append(until)

    async with anyio.create_task_group() as group:
        group.start_soon(sleep, 5.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1
        async with anyio.create_task_group() as inner:
            inner.start_soon(sleep, 3.0)
            await anyio.wait_all_tasks_blocked()
            assert clock.sleepers == 2
            inner.cancel_scope.cancel()
        assert clock.sleepers == 1  # the cancelled one no longer counts
        clock.advance(5)
    assert woken == [5.0]
