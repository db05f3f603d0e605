"""EventSourceResponse's FrameSource fast path, and use from FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from ssehub import SendTimeoutError
from ssehub._frames import FrameSource
from ssehub.response import EventSourceResponse
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio

OPEN = b": ok\n\n"


class MemoryFrameSource:
    """A small real FrameSource, as a broker subscription is: frames are appended with
    ``put``, ``end`` ends it after what is pending, ``aclose`` ends it at once."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.ended = False
        self.ready: Callable[[], object] | None = None
        self.calls = 0
        self.closed = 0

    def put(self, frame: bytes) -> None:
        self.pending.append(frame)
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        ready, self.ready = self.ready, None
        if ready is not None:
            ready()

    def take_frames(self) -> list[bytes] | None:
        self.calls += 1
        frames, self.pending = self.pending, []
        if frames:
            return frames
        return None if self.ended else []

    def on_ready(self, callback: Callable[[], object] | None) -> None:
        self.ready = callback

    async def aclose(self) -> None:
        self.closed += 1
        self.end()

    def __aiter__(self) -> AsyncIterator[bytes]:  # pragma: no cover - must not be used
        raise AssertionError("the response must use take_frames(), not iteration")


async def test_memory_frame_source_is_a_frame_source() -> None:
    source = MemoryFrameSource()
    assert isinstance(source, FrameSource)
    await source.aclose()
    assert source.take_frames() is None


async def test_frames_are_sent_as_is_one_send_per_batch() -> None:
    source = MemoryFrameSource()
    for i in range(3):
        source.put(f"id: {i}\ndata: f{i}\n\n".encode())
    source.end()
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(source, sep="\r\n", ping=0)) as stream:
            await stream.start()
            await stream.read_all()
    bodies = [m["body"] for m in stream.body_messages]
    assert bodies == [
        b": ok\r\n\r\n",
        b"id: 0\ndata: f0\n\nid: 1\ndata: f1\n\nid: 2\ndata: f2\n\n",
        b"",
    ]
    assert source.closed == 1


async def test_frame_source_live_frames_and_disconnect_closes_it() -> None:
    source = MemoryFrameSource()
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(source, ping=0)) as stream:
            assert await stream.receive_chunk() == OPEN
            source.put(b"data: live\n\n")
            assert (await stream.events().next_event()).data == "live"
            await stream.disconnect()
            await stream.wait_closed()
    assert source.closed == 1


async def test_frame_source_pings_when_idle() -> None:
    source = MemoryFrameSource()
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(source, ping=0.01)) as stream:
            assert await stream.receive_chunk() == OPEN
            ping = await stream.receive_chunk()
            assert ping is not None
            assert ping.startswith(b": ping - ")
            # The ping woke the stream without a frame; the next frame still arrives.
            source.put(b"data: after ping\n\n")
            assert (await stream.events().next_event()).data == "after ping"
    assert source.closed == 1


async def test_frame_source_shutdown_event_ends_the_stream_cleanly() -> None:
    source = MemoryFrameSource()
    shutdown = anyio.Event()
    response = EventSourceResponse(source, shutdown_event=shutdown, ping=0)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert await stream.receive_chunk() == OPEN
            shutdown.set()
            assert await stream.read_all() == b""
            assert stream.complete
    assert source.closed == 1


@pytest.mark.parametrize("grace", [0, 0.05])
async def test_frame_source_shutdown_abandons_a_send_blocked_on_a_frozen_client(
    grace: float,
) -> None:
    # send_timeout=None (the default): before the fix the stream never ended.
    class QuickShutdown(EventSourceResponse):
        SHUTDOWN_SEND_TIMEOUT = 0.05

    source = MemoryFrameSource()
    source.put(b"data: stuck\n\n")
    shutdown = anyio.Event()
    blocked = anyio.Event()
    bodies: list[tuple[bytes, bool]] = []

    async def frozen_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append((message["body"], message["more_body"]))
            if message["body"] != OPEN:
                blocked.set()
                await anyio.sleep_forever()

    async def never_receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    response = QuickShutdown(source, shutdown_event=shutdown, shutdown_grace_period=grace, ping=0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(response, http_scope(), never_receive, frozen_send)
            await blocked.wait()
            shutdown.set()
    assert bodies == [(OPEN, True), (b"data: stuck\n\n", True), (b"", False)]
    assert source.closed == 1


async def test_frame_source_send_timeout() -> None:
    source = MemoryFrameSource()
    source.put(b"data: stuck\n\n")

    async def frozen_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"] != OPEN:
            await anyio.sleep_forever()

    async def never_receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    response = EventSourceResponse(source, send_timeout=0.05, ping=0)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), never_receive, frozen_send)
    assert source.closed == 1


def make_fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/declared", response_class=EventSourceResponse)
    async def declared() -> EventSourceResponse:
        async def numbers() -> AsyncIterator[dict[str, Any]]:
            for i in range(2):
                yield {"data": i, "id": i}

        return EventSourceResponse(numbers(), ping=0)

    @app.get("/returned")
    def returned() -> EventSourceResponse:
        def words() -> Iterator[str]:
            yield from ("a", "b")

        return EventSourceResponse(words(), ping=0)

    return app


async def test_fastapi_response_class_and_returned_response() -> None:
    app = make_fastapi_app()
    with anyio.fail_after(5):
        async with stream_asgi(app, "/declared") as stream:
            await stream.start()
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            events = await stream.events().rest()
            assert [(e.data, e.id) for e in events] == [("0", "0"), ("1", "1")]
        async with stream_asgi(app, "/returned") as stream:
            events = await stream.events().rest()
            assert [e.data for e in events] == ["a", "b"]
    responses = app.openapi()["paths"]["/declared"]["get"]["responses"]
    assert "text/event-stream" in responses["200"]["content"]


async def test_frame_source_head_closes_it_without_reading() -> None:
    source = MemoryFrameSource()
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(source), method="HEAD") as stream:
            assert await stream.read_all() == b""
            await stream.wait_closed()
    assert source.calls == 0
    assert source.closed == 1


async def test_frame_source_closed_when_the_first_send_fails() -> None:
    source = MemoryFrameSource()

    async def broken_send(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    async def never_receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    with anyio.fail_after(5), pytest.raises(OSError, match="reset"):
        await EventSourceResponse(source)(http_scope(), never_receive, broken_send)
    assert source.calls == 0
    assert source.closed == 1


class _Silent(EventSourceResponse):
    OPEN_COMMENT = None


@pytest.mark.parametrize("response_class", [EventSourceResponse, _Silent])
async def test_frame_path_first_ping_waits_a_whole_interval(
    response_class: type[EventSourceResponse],
) -> None:
    # Idle time counts from the headers (and the opening comment, when there is one): without
    # an opening comment the first ping must not go out at once.
    source = MemoryFrameSource()
    stamps: list[tuple[float, bytes]] = []
    pinged = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        stamps.append((anyio.current_time(), message.get("body", b"")))
        if message.get("body", b"").startswith(b": ping"):
            pinged.set()

    async def receive() -> dict[str, Any]:
        await pinged.wait()
        return {"type": "http.disconnect"}

    response = response_class(source, ping=0.3)
    with anyio.fail_after(5):
        await response(http_scope(), receive, send)
    start = stamps[0][0]
    ping_at = next(t for t, body in stamps if body.startswith(b": ping"))
    assert ping_at - start >= 0.25


async def test_frame_path_idle_time_counts_from_the_end_of_a_slow_send() -> None:
    source = MemoryFrameSource()
    source.put(b"data: slow\n\n")
    ended: list[float] = []
    pinged = anyio.Event()
    ping_at: list[float] = []

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        if body == b"data: slow\n\n":
            await anyio.sleep(0.4)  # a client slow to take this write (longer than ping)
            ended.append(anyio.current_time())
        elif body.startswith(b": ping"):
            ping_at.append(anyio.current_time())
            pinged.set()

    async def receive() -> dict[str, Any]:
        await pinged.wait()
        return {"type": "http.disconnect"}

    response = EventSourceResponse(source, ping=0.2)
    with anyio.fail_after(5):
        await response(http_scope(), receive, send)
    assert ping_at[0] - ended[0] >= 0.15
