"""EventSourceResponse: flushing, disconnects, timeouts, pings, shutdown and coalescing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.routing import Route

from ssehub import SendTimeoutError, ServerSentEvent
from ssehub._response import _shutdown
from ssehub._response._timers import current_clock
from ssehub.response import EventSourceResponse
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio

OPEN = b": ok\n\n"


async def never_receive() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError


async def test_headers_and_first_comment_before_the_first_event() -> None:
    gate = anyio.Event()

    async def gen() -> AsyncIterator[str]:
        await gate.wait()
        yield "first"

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            await stream.start()
            assert await stream.receive_chunk() == OPEN
            assert not gate.is_set()
            gate.set()
            assert await stream.receive_chunk() == b"data: first\n\n"
            assert await stream.receive_chunk() == b""
            assert stream.complete


async def test_first_comment_flushes_headers_through_gzip_middleware() -> None:
    gate = anyio.Event()

    async def gen() -> AsyncIterator[str]:
        await gate.wait()
        yield "late"

    async def endpoint(request: Request) -> EventSourceResponse:
        return EventSourceResponse(gen(), ping=0)

    app = Starlette(
        routes=[Route("/sse", endpoint)],
        middleware=[Middleware(GZipMiddleware, minimum_size=0)],
    )
    with anyio.fail_after(5):
        async with stream_asgi(app, "/sse", headers={"accept-encoding": "gzip"}) as stream:
            await stream.start()
            assert stream.status_code == 200
            assert "content-encoding" not in stream.headers
            assert await stream.receive_chunk() == OPEN
            assert not gate.is_set()
            gate.set()
            event = await stream.events().next_event()
            assert event.data == "late"


async def test_disconnect_stops_a_waiting_generator_and_runs_finally_once() -> None:
    finally_runs: list[str] = []
    handler_calls: list[dict[str, Any]] = []

    async def gen() -> AsyncIterator[str]:
        try:
            yield "hello"
            await anyio.sleep_forever()
            yield "never"
        finally:
            finally_runs.append("finally")

    async def on_close(message: dict[str, Any]) -> None:
        handler_calls.append(message)

    response = EventSourceResponse(gen(), client_close_handler_callable=on_close, ping=0)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert (await stream.events().next_event()).data == "hello"
            await stream.disconnect()
            await stream.wait_closed()
            assert not stream.complete
    assert finally_runs == ["finally"]
    assert handler_calls == [{"type": "http.disconnect"}]
    assert response.active is False


async def test_disconnect_stops_a_generator_suspended_at_yield() -> None:
    # Frames larger than the outbox bound make the producer wait with the generator suspended
    # at its yield; the response must close it there (finally once, via aclose).
    finally_runs: list[str] = []
    big = "x" * 70_000

    async def gen() -> AsyncIterator[str]:
        try:
            while True:
                yield big
        finally:
            finally_runs.append("finally")

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0), max_buffered_messages=1) as s:
            assert (await s.events().next_event()).data == big
            await s.disconnect()
            await s.wait_closed()
    assert finally_runs == ["finally"]


async def test_send_timeout_sheds_a_frozen_client() -> None:
    finally_runs: list[str] = []

    async def gen() -> AsyncIterator[str]:
        try:
            while True:
                yield "tick"
                await anyio.lowlevel.checkpoint()
        finally:
            finally_runs.append("finally")

    body_messages = 0

    async def frozen_send(message: dict[str, Any]) -> None:
        nonlocal body_messages
        if message["type"] == "http.response.body":
            body_messages += 1
            if body_messages > 1:  # accepts the opening comment, then never returns
                await anyio.sleep_forever()

    response = EventSourceResponse(gen(), send_timeout=0.05, ping=0)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), never_receive, frozen_send)
    assert finally_runs == ["finally"]


async def test_send_timeout_covers_pings() -> None:
    async def gen() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"

    body_messages = 0

    async def frozen_send(message: dict[str, Any]) -> None:
        nonlocal body_messages
        if message["type"] == "http.response.body":
            body_messages += 1
            if body_messages > 1:  # the first ping never goes through
                await anyio.sleep_forever()

    response = EventSourceResponse(gen(), send_timeout=0.05, ping=0.01)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), never_receive, frozen_send)


async def test_cleanup_timeout_bounds_a_stuck_finally(caplog: pytest.LogCaptureFixture) -> None:
    cleanup: list[str] = []

    async def gen() -> AsyncIterator[str]:
        try:
            while True:
                yield "x" * 70_000  # over the outbox bound: suspended at yield when closed
        finally:
            cleanup.append("started")
            await anyio.sleep_forever()
            cleanup.append("finished")  # pragma: no cover

    async def frozen_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"] != OPEN:
            await anyio.sleep_forever()

    response = EventSourceResponse(gen(), send_timeout=0.05, cleanup_timeout=0.05, ping=0)
    with (
        caplog.at_level(logging.WARNING, "ssehub.response"),
        anyio.fail_after(5),
        pytest.raises(SendTimeoutError),
    ):
        await response(http_scope(), never_receive, frozen_send)
    assert cleanup == ["started"]
    assert "cleanup cancelled" in caplog.text


async def test_pings_when_idle_with_custom_factory() -> None:
    async def gen() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"

    factory_calls = 0

    def factory() -> ServerSentEvent:
        nonlocal factory_calls
        factory_calls += 1
        return ServerSentEvent(comment="custom ping")

    response = EventSourceResponse(gen(), ping=0.01, ping_message_factory=factory)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert await stream.receive_chunk() == OPEN
            assert await stream.receive_chunk() == b": custom ping\n\n"
            assert await stream.receive_chunk() == b": custom ping\n\n"
    assert factory_calls >= 2


async def test_default_ping_is_a_timestamped_comment() -> None:
    async def gen() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0.01, sep="\r\n")) as stream:
            assert await stream.receive_chunk() == b": ok\r\n\r\n"
            ping = await stream.receive_chunk()
    assert ping is not None
    assert ping.startswith(b": ping - ")
    assert ping.endswith(b"\r\n\r\n")


async def test_ping_zero_sends_no_pings_and_does_not_spin() -> None:
    gate = anyio.Event()

    async def gen() -> AsyncIterator[str]:
        await gate.wait()
        yield "done"

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            assert await stream.receive_chunk() == OPEN
            # A busy loop (or a ping task spinning on sleep(0)) would never let every task
            # block, and this would time out.
            await anyio.wait_all_tasks_blocked()
            assert len(stream.messages) == 2
            gate.set()
            assert await stream.read_all() == b"data: done\n\n"


async def test_coalescing_pending_events_go_out_in_one_send() -> None:
    # While a send is blocked the generator waits at its yield (as with sse-starlette); once
    # the client reads again, everything the generator produces meanwhile goes in one send.
    first_sent = anyio.Event()
    second_yielded = anyio.Event()
    release = anyio.Event()
    bodies: list[bytes] = []

    async def gen() -> AsyncIterator[str]:
        yield "e0"
        await first_sent.wait()
        second_yielded.set()
        for i in range(1, 10):
            yield f"e{i}"

    async def slow_send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        bodies.append(message["body"])
        if message["body"] == b"data: e0\n\n":
            first_sent.set()
            await release.wait()

    async def release_when_the_generator_waits() -> None:
        await second_yielded.wait()
        await anyio.wait_all_tasks_blocked()  # the producer paused after e1, the send still blocked
        release.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(release_when_the_generator_waits)
            await EventSourceResponse(gen(), ping=0)(http_scope(), never_receive, slow_send)
    assert bodies == [
        OPEN,
        b"data: e0\n\n",
        b"data: e1\n\n",
        b"".join(f"data: e{i}\n\n".encode() for i in range(2, 10)),
        b"",
    ]


async def test_shutdown_event_lets_the_generator_say_goodbye() -> None:
    shutdown = anyio.Event()

    async def gen() -> AsyncIterator[Any]:
        yield "hello"
        await shutdown.wait()
        yield {"event": "bye", "data": "server shutting down"}

    response = EventSourceResponse(gen(), shutdown_event=shutdown, shutdown_grace_period=30, ping=0)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            events = stream.events()
            assert (await events.next_event()).data == "hello"
            shutdown.set()
            rest = await events.rest()
            assert [(e.event, e.data) for e in rest] == [("bye", "server shutting down")]
            assert stream.complete


@pytest.mark.parametrize("grace", [0, 0.05])
async def test_shutdown_event_cancels_a_stubborn_generator_cleanly(grace: float) -> None:
    shutdown = anyio.Event()
    finally_runs: list[str] = []

    async def gen() -> AsyncIterator[str]:
        try:
            yield "hello"
            await anyio.sleep_forever()
            yield "never"
        finally:
            finally_runs.append("finally")

    response = EventSourceResponse(
        gen(), shutdown_event=shutdown, shutdown_grace_period=grace, ping=0
    )
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert (await stream.events().next_event()).data == "hello"
            shutdown.set()
            assert await stream.read_all() == b""
            assert stream.complete  # a clean end of body, not an aborted connection
            await stream.wait_closed()
    assert finally_runs == ["finally"]


async def test_generator_error_propagates_unwrapped() -> None:
    async def gen() -> AsyncIterator[str]:
        yield "ok"
        raise RuntimeError("boom")

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="boom"):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            await stream.wait_closed()


# ------------------------------------------- shutdown with a client that never reads


class FrozenClient:
    """A scripted ASGI ``send``: accepts the opening comment, then every body message blocks
    forever (a client whose socket buffer is full), unless ``accept_final`` lets the final
    empty body through (the client reads again just as the server shuts down)."""

    def __init__(self, *, accept_final: bool = False) -> None:
        self.accept_final = accept_final
        self.bodies: list[tuple[bytes, bool]] = []  # every body message the response tried
        self.blocked = anyio.Event()  # set when a send starts blocking

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        self.bodies.append((message["body"], message["more_body"]))
        if message["body"] == OPEN or (self.accept_final and not message["more_body"]):
            return
        self.blocked.set()
        await anyio.sleep_forever()


class QuickShutdown(EventSourceResponse):
    SHUTDOWN_SEND_TIMEOUT = 0.05  # keeps the bounded final send short in tests


async def ticks(finally_runs: list[str]) -> AsyncIterator[str]:
    try:
        while True:
            yield "tick"
            await anyio.lowlevel.checkpoint()
    finally:
        finally_runs.append("finally")


async def run_until_blocked_then_shut_down(
    response: EventSourceResponse, client: FrozenClient, shutdown: anyio.Event
) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(response, http_scope(), never_receive, client.send)
        await client.blocked.wait()
        shutdown.set()


@pytest.mark.parametrize("grace", [0, 0.05])
async def test_shutdown_abandons_a_send_blocked_on_a_frozen_client(grace: float) -> None:
    # send_timeout=None (the default): before the fix the stream never ended.
    shutdown = anyio.Event()
    finally_runs: list[str] = []
    client = FrozenClient()
    response = QuickShutdown(
        ticks(finally_runs), shutdown_event=shutdown, shutdown_grace_period=grace, ping=0
    )
    with anyio.fail_after(5):
        await run_until_blocked_then_shut_down(response, client, shutdown)
    assert finally_runs == ["finally"]
    assert not response.active
    # The final empty body was attempted (bounded, the client is frozen), and nothing pending
    # was sent after the cut send: the client must not receive events past a gap.
    assert client.bodies[0] == (OPEN, True)
    assert client.bodies[1][0].startswith(b"data: tick\n\n")
    assert client.bodies[-1] == (b"", False)
    assert len(client.bodies) == 3


async def test_shutdown_sends_the_final_body_when_the_client_takes_it() -> None:
    shutdown = anyio.Event()
    finally_runs: list[str] = []
    client = FrozenClient(accept_final=True)
    response = EventSourceResponse(ticks(finally_runs), shutdown_event=shutdown, ping=0)
    with anyio.fail_after(5):
        await run_until_blocked_then_shut_down(response, client, shutdown)
    assert client.bodies[-1] == (b"", False)
    assert finally_runs == ["finally"]


async def test_grace_period_bounds_a_farewell_stuck_on_a_frozen_client() -> None:
    shutdown = anyio.Event()
    client = FrozenClient()

    async def gen() -> AsyncIterator[str]:
        await shutdown.wait()
        yield "bye"  # the content ends by itself; its farewell cannot be delivered

    async def shut_down_soon() -> None:
        # The generator waits for the shutdown, so the first blocked send is the farewell.
        shutdown.set()

    response = QuickShutdown(gen(), shutdown_event=shutdown, shutdown_grace_period=0.05, ping=0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(response, http_scope(), never_receive, client.send)
            group.start_soon(shut_down_soon)
    assert client.blocked.is_set()
    assert client.bodies == [(OPEN, True), (b"data: bye\n\n", True), (b"", False)]


async def test_shutdown_with_a_frozen_client_respects_a_shorter_send_timeout() -> None:
    # The final body's bound is send_timeout when that is shorter than SHUTDOWN_SEND_TIMEOUT,
    # and the shutdown is not reported as a SendTimeoutError.
    class SlowShutdown(EventSourceResponse):
        SHUTDOWN_SEND_TIMEOUT = 1000

    shutdown = anyio.Event()
    client = FrozenClient()
    response = SlowShutdown(ticks([]), shutdown_event=shutdown, ping=0, send_timeout=0.5)
    with anyio.fail_after(5):
        await run_until_blocked_then_shut_down(response, client, shutdown)
    assert client.bodies[-1] == (b"", False)


async def test_streams_sharing_a_shutdown_event_share_one_watch_task() -> None:
    # sse-starlette's idiom: one app-wide event for every stream. It is watched by one task per
    # event loop, not one per stream, and setting it ends every stream cleanly.
    shutdown = anyio.Event()
    count = 50
    opened = 0
    all_open = anyio.Event()
    ends: list[bytes] = []

    async def gen() -> AsyncIterator[str]:
        yield "hello"
        await anyio.sleep_forever()
        yield "never"

    async def send(message: dict[str, Any]) -> None:
        nonlocal opened
        if message["type"] != "http.response.body":
            return
        if message["body"] == b"data: hello\n\n":
            opened += 1
            if opened == count:
                all_open.set()
        if not message.get("more_body", False):
            ends.append(message["body"])

    current_clock()  # the loop's one timer (a task under trio) is not per stream
    baseline = len(anyio.get_running_tasks())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(count):
                response = EventSourceResponse(gen(), shutdown_event=shutdown, ping=0)
                group.start_soon(response, http_scope("/"), never_receive, send)
            await all_open.wait()
            await anyio.wait_all_tasks_blocked()
            # Per stream: the task calling it, its disconnect watch, its producer; one watch.
            assert len(anyio.get_running_tasks()) - baseline == 3 * count + 1
            shutdown.set()
        assert ends == [b""] * count  # every stream ended with a clean, empty final body
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == baseline


async def test_the_watch_of_a_shutdown_event_ends_with_the_last_stream() -> None:
    # Streams that end otherwise (here their content ends) take the event's task with them.
    shutdown = anyio.Event()
    current_clock()
    baseline = len(anyio.get_running_tasks())
    with anyio.fail_after(5):
        for content in (["a"], ["b", "c"]):
            response = EventSourceResponse(content, shutdown_event=shutdown, ping=0)
            async with stream_asgi(response) as stream:
                await stream.read_all()
                assert stream.complete
        await anyio.wait_all_tasks_blocked()
    assert len(anyio.get_running_tasks()) == baseline
    assert not _shutdown._registry().events


async def test_a_stream_starting_after_its_shutdown_event_was_set_ends_at_once() -> None:
    shutdown = anyio.Event()
    shutdown.set()

    async def gen() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"

    response = EventSourceResponse(gen(), shutdown_event=shutdown, ping=0)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert await stream.read_all() == b": ok\n\n"  # the opening comment, then the end
            assert stream.complete
    assert not _shutdown._registry().events


async def test_the_first_watcher_of_a_shutdown_event_is_registered_before_its_task_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by review: with an eager task factory (Python 3.12+) the watch task runs inside
    # create_task; it must find its first stream there, or it ends and the event is lost.
    seen: list[int] = []
    start = _shutdown._EventWatch.start

    def checked_start(watch: Any) -> None:
        seen.append(len(watch.callbacks))
        start(watch)

    monkeypatch.setattr(_shutdown._EventWatch, "start", checked_start)
    shutdown = anyio.Event()
    assert not _shutdown.watch(shutdown, print)
    assert seen == [1]
    _shutdown.unwatch(shutdown, print)
    assert not _shutdown._registry().events
