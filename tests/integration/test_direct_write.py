"""Direct writes behind a real uvicorn (``ssehub.uvicorn.HttpToolsProtocol``) on 127.0.0.1.

uvicorn runs in-process on its own thread and event loop (asyncio and uvloop); the test thread
publishes with ``Broker.publish_threadsafe`` and reads with real clients (httpx, or a raw
socket with a small receive buffer for a client that stops reading). A subscription's
``statistics().peak`` tells whether events went through its queue: 0 means every event was
written directly by the publisher.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httptools
import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssehub.broker import Broker, Subscription
from ssehub.hub import HubSettings, create_app
from ssehub.response import EventSourceResponse
from ssehub.uvicorn import HttpToolsProtocol
from ssehub.wire import EventParser, MessageEvent

from .test_response_uvicorn import read_events as read_events_with
from .test_response_uvicorn import serve as serve_uvicorn

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
LOOPS = ["asyncio", "uvloop"]


class Streams:
    """The app's subscriptions, handed to the test thread as they open and close."""

    def __init__(self) -> None:
        self.opened: list[Subscription] = []
        self.lock = threading.Condition()
        self.closed = threading.Event()

    def add(self, sub: Subscription) -> None:
        with self.lock:
            self.opened.append(sub)
            self.lock.notify_all()

    def wait(self, count: int) -> list[Subscription]:
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.opened) >= count, TIMEOUT)
            return list(self.opened)


class StreamApp:
    """A bare ASGI app: ``GET`` anything streams topic ``t``; its lifespan runs the broker.

    No framework in between, so the response gets the server's own ``send`` (Starlette's
    error middleware wraps it; the hub's app takes care of that itself, see the hub test).
    """

    def __init__(self) -> None:
        self.streams = Streams()
        self.broker: Broker | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup

            def unsubscribed(_sub: Subscription) -> None:
                self.streams.closed.set()

            async with Broker(queue_size=100_000, on_unsubscribe=unsubscribed) as broker:
                self.broker = broker
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.broker is not None
        sub = self.broker.subscribe("t")
        self.streams.add(sub)
        await EventSourceResponse(sub, ping=0)(scope, receive, send)


class WrappingMiddleware:
    """A pure ASGI middleware that wraps ``send`` (as a compressing one would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            await send(message)

        await self.app(scope, receive, wrapped)


@contextmanager
def serve(app: Any, loop: str) -> Iterator[str]:
    with serve_uvicorn(app, loop=loop, http=HttpToolsProtocol) as (base, _server):
        yield base


def read_events(chunks: Iterator[bytes], count: int) -> list[MessageEvent]:
    return read_events_with(chunks, EventParser(), count)


@pytest.mark.parametrize("loop", LOOPS)
def test_events_are_written_directly_and_arrive_in_order(loop: str) -> None:
    app = StreamApp()
    streams = app.streams
    with serve(app, loop) as base, httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        with client.stream("GET", "/events") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            (sub,) = streams.wait(1)
            broker = app.broker
            assert broker is not None
            stored = [broker.publish_threadsafe("t", f"event {i}\nline 2") for i in range(50)]
            events = read_events(chunks, 50)
        assert [(e.id, e.data) for e in events] == [
            (s.id, f"event {i}\nline 2") for i, s in enumerate(stored)
        ]
        stats = sub.statistics()
        assert stats.peak == 0  # every event went straight to the connection
        assert stats.delivered == 50
        assert streams.closed.wait(TIMEOUT)  # the disconnect ended the subscription


class RawClient:
    """A GET /events over a socket with a small receive buffer, read only when told to."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((host, int(port)))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        self.events: list[MessageEvent] = []
        self.parser = EventParser()
        self.http = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self.events.extend(self.parser.feed(body))

    def read_until(self, count: int) -> list[MessageEvent]:
        while len(self.events) < count:
            data = self.sock.recv(1 << 16)
            assert data, "the server closed the stream"
            self.http.feed_data(data)
        return self.events

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_stops_reading_gets_every_event_in_order_after_the_fallback(
    loop: str,
) -> None:
    app = StreamApp()
    streams = app.streams
    with serve(app, loop) as base:
        client = RawClient(base)
        try:
            (sub,) = streams.wait(1)
            broker = app.broker
            assert broker is not None
            payload = "x" * 16_384
            stored = []
            # The client reads nothing: the socket buffers fill, uvicorn pauses writing, and
            # the writer refuses; from then on events queue. Bounded: at most 2 000 events.
            while sub.statistics().queued == 0:
                assert len(stored) < 2_000, "writing never paused"
                stored.append(broker.publish_threadsafe("t", f"{len(stored)} {payload}"))
            stored += [
                broker.publish_threadsafe("t", f"{len(stored) + i} {payload}") for i in range(10)
            ]
            events = client.read_until(len(stored))
            assert [e.id for e in events] == [s.id for s in stored]  # no gap, no duplicate
            assert [e.data.split(" ", 1)[0] for e in events] == [str(i) for i in range(len(stored))]
            assert sub.statistics().peak > 0
            # Caught up: the next events are written directly again.
            queued_before = sub.statistics().peak
            more = [broker.publish_threadsafe("t", f"more {i}") for i in range(3)]
            events = client.read_until(len(stored) + 3)
            assert [e.id for e in events[-3:]] == [s.id for s in more]
            assert sub.statistics().queued == 0
            assert sub.statistics().peak == queued_before
        finally:
            client.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_middleware_that_wraps_send_turns_direct_writes_off(loop: str) -> None:
    app = StreamApp()
    streams = app.streams
    with (
        serve(WrappingMiddleware(app), loop) as base,
        httpx.Client(base_url=base, timeout=TIMEOUT) as client,
    ):
        with client.stream("GET", "/events") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            (sub,) = streams.wait(1)
            stored = [app.broker.publish_threadsafe("t", str(i)) for i in range(3)]
            events = read_events(chunks, 3)
        assert [e.id for e in events] == [s.id for s in stored]
        assert sub.statistics().peak >= 1  # delivered through the queue and ASGI send


def _hub_stream_peak(app: Starlette) -> int:
    streams = list(app.state.hub._streams)
    assert len(streams) == 1
    peak: int = streams[0]._subscription.statistics().peak
    return peak


@pytest.mark.parametrize("add_middleware", [False, True], ids=["hub", "hub+user-middleware"])
def test_hub_streams_write_directly_unless_a_user_middleware_wraps_the_hub(
    add_middleware: bool,
) -> None:
    app = create_app(HubSettings(dashboard=False, metrics=False))
    if add_middleware:
        app.add_middleware(WrappingMiddleware)
    with serve(app, "uvloop") as base, httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        with client.stream("GET", "/events?topic=t") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            answers = [
                client.post("/publish", json={"topic": "t", "data": f"hub {i}"}).json()
                for i in range(5)
            ]
            events = read_events(chunks, 5)
            peak = _hub_stream_peak(app)
        assert [e.id for e in events] == [a["id"] for a in answers]
        assert [e.data for e in events] == [f"hub {i}" for i in range(5)]
        assert (peak == 0) is not add_middleware


def _open_streams_gauge(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("ssehub_open_connections "):
            return float(line.split()[1])
    raise AssertionError("no ssehub_open_connections in /metrics")


def test_a_detached_hub_stream_is_counted_open_until_it_really_ends() -> None:
    # GET /events leaves the middleware stack once its headers are out (hub/_lane.py); the
    # metrics' open-streams gauge must still follow the stream, not the stack.
    app = create_app(HubSettings(dashboard=False, metrics=True))
    hub = app.state.hub
    closed = threading.Event()
    stream_closed = hub._stream_closed

    def note_closed(stream: Any) -> None:
        stream_closed(stream)
        closed.set()

    hub._stream_closed = note_closed
    with serve(app, "uvloop") as base, httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        with client.stream("GET", "/events?topic=t") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            assert response.headers["x-request-id"]  # the start went through the stack
            assert _open_streams_gauge(client) == 1
            answer = client.post("/publish", json={"topic": "t", "data": "x"}).json()
            assert [e.id for e in read_events(chunks, 1)] == [answer["id"]]
        assert closed.wait(TIMEOUT)
        assert _open_streams_gauge(client) == 0
        assert client.get("/status").json()["connections"] == 0
