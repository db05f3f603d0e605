"""EventSourceResponse behind a real uvicorn on 127.0.0.1, read by a real streaming httpx client.

uvicorn runs in-process on its own thread and event loop; the test thread drives httpx's sync
client, so these tests are plain functions (the server side is asyncio because uvicorn is).
Generators are gated by ``threading.Event`` objects the test controls; nothing sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.routing import Route

from ssehub.response import EventSourceResponse
from ssehub.wire import EventParser, MessageEvent

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


class ShutdownAwareServer(uvicorn.Server):
    """A uvicorn server that tells the app it is shutting down (no patching of uvicorn).

    uvicorn only stops keep-alive on open connections when it shuts down; it does not tell a
    streaming response. Setting the app's shutdown event first lets every stream end cleanly.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app: Any = self.config.app
        app.state.shutdown.set()
        await super().shutdown(sockets=sockets)


@contextmanager
def serve(
    app: Any,
    server_class: type[uvicorn.Server] = uvicorn.Server,
    *,
    loop: str = "asyncio",
    http: Any = "httptools",
) -> Iterator[tuple[str, uvicorn.Server]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts: no startup polling
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop=loop, http=http)
    server = server_class(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def make_app() -> tuple[Starlette, dict[str, threading.Event]]:
    flags = {name: threading.Event() for name in ("gate", "started", "closed")}

    async def gated(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                flags["started"].set()
                await anyio.to_thread.run_sync(flags["gate"].wait)
                yield {"data": "first", "id": 1}
                await request.app.state.shutdown.wait()
                yield {"event": "bye", "data": "shutting down"}
            finally:
                flags["closed"].set()

        return EventSourceResponse(
            events(), ping=0, shutdown_event=request.app.state.shutdown, shutdown_grace_period=5
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.shutdown = anyio.Event()
        yield

    return Starlette(routes=[Route("/events", gated)], lifespan=lifespan), flags


def read_events(chunks: Iterator[bytes], parser: EventParser, count: int) -> list[MessageEvent]:
    events: list[MessageEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
        if len(events) >= count:
            break
    return events


def test_first_comment_before_the_first_event_then_events_arrive_incrementally() -> None:
    app, flags = make_app()
    with serve(app) as (base, _server), httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        with client.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-store"
            assert "content-length" not in response.headers
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            assert not flags["gate"].is_set()
            flags["gate"].set()
            parser = EventParser()
            events = read_events(chunks, parser, 1)
            assert [(e.data, e.id) for e in events] == [("first", "1")]
        # Leaving the block closes the connection: the generator must stop.
        assert flags["closed"].wait(TIMEOUT)


def test_headers_and_first_comment_flush_through_gzip_middleware() -> None:
    # Starlette's GZipMiddleware holds http.response.start back until the first body chunk;
    # the opening comment is that chunk, so the stream opens before any event exists.
    app, flags = make_app()
    app.add_middleware(GZipMiddleware, minimum_size=0)
    with serve(app) as (base, _server), httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        headers = {"Accept-Encoding": "gzip"}
        with client.stream("GET", "/events", headers=headers) as response:
            assert response.status_code == 200
            assert "content-encoding" not in response.headers  # event streams stay unzipped
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            assert flags["started"].wait(TIMEOUT)
            assert not flags["gate"].is_set()  # no event was produced yet
            flags["gate"].set()
            assert [e.data for e in read_events(chunks, EventParser(), 1)] == ["first"]
        assert flags["closed"].wait(TIMEOUT)


def test_client_disconnect_stops_the_generator() -> None:
    app, flags = make_app()
    with serve(app) as (base, _server), httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        with client.stream("GET", "/events") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b": ok\n\n"
            assert flags["started"].wait(TIMEOUT)
            flags["gate"].set()
            assert [e.data for e in read_events(chunks, EventParser(), 1)] == ["first"]
        assert flags["closed"].wait(TIMEOUT)


def test_server_shutdown_ends_open_streams_cleanly() -> None:
    app, flags = make_app()
    flags["gate"].set()
    finished = threading.Event()
    with (
        serve(app, ShutdownAwareServer) as (base, server),
        httpx.Client(base_url=base, timeout=TIMEOUT) as client,
        client.stream("GET", "/events") as response,
    ):
        chunks = response.iter_raw()
        parser = EventParser()
        assert [e.data for e in read_events(chunks, parser, 1)] == ["first"]
        events: list[MessageEvent] = []

        def read_to_end() -> None:
            # Reading to the end only succeeds if the chunked body is terminated
            # properly; an aborted connection raises here.
            for chunk in chunks:
                events.extend(parser.feed(chunk))
            finished.set()

        reader = threading.Thread(target=read_to_end, daemon=True)
        reader.start()
        # Trigger uvicorn's own shutdown, as its signal handler would.
        server.should_exit = True
        reader.join(TIMEOUT)
        assert finished.is_set()
        assert [(e.event, e.data) for e in events] == [("bye", "shutting down")]
    assert flags["closed"].is_set()
