"""Test helpers for event streams: a streaming ASGI driver, an event collector, a manual clock.

Starlette's ``TestClient`` and httpx's ``ASGITransport`` wait for the whole body, which never
comes for an endless event stream. :func:`stream_asgi` instead calls the ASGI app directly with a
scripted ``receive``/``send`` and hands every message to the test as it is sent, so a test can
read the headers before the first event exists, read events one by one, and then disconnect.

Example::

    import anyio
    from ssehub import EventSourceResponse
    from ssehub.testing import stream_asgi


    async def endpoint(scope, receive, send):
        async def numbers():
            for i in range(3):
                yield {"data": i, "id": i}

        await EventSourceResponse(numbers())(scope, receive, send)


    async def test_numbers():
        with anyio.fail_after(5):
            async with stream_asgi(endpoint, path="/events") as stream:
                await stream.start()
                assert stream.status_code == 200
                events = await stream.events().take(3)
                assert [e.data for e in events] == ["0", "1", "2"]
                await stream.disconnect()

:class:`ManualClock` (from ``ssehub._clock``) is re-exported here for tests of time-based
behaviour, and :func:`drain_listener` empties a channel listener's queue.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Scope

from ._clock import ManualClock
from ._exceptions import NoMessages
from ._excgroups import collapse_excgroups
from .wire import EventParser, MessageEvent

if TYPE_CHECKING:
    from .channels import Channel
    from .channels import Message as ChannelMessage

__all__ = [
    "ASGIStream",
    "EventCollector",
    "ManualClock",
    "drain_listener",
    "http_scope",
    "stream_asgi",
]


async def drain_listener(channel: Channel, listener_id: str) -> list[ChannelMessage]:
    """Return every message queued for a channel listener now, taking them off its queue.

    Raises:
        UnknownListener: the channel has no listener with this id.
    """
    messages = []
    try:
        while True:
            messages.append(await channel.deliver_next(listener_id))
    except NoMessages:
        return messages


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] | dict[str, str] = (),
    query_string: str | bytes = b"",
    **extra: Any,
) -> Scope:
    """Build an ASGI 3 HTTP scope for a request from ``127.0.0.1``.

    Args:
        path: the request path; a ``?query`` part is split off into the query string (then
            ``query_string`` must not be given too).
        method: the HTTP method.
        headers: request headers as pairs or a dict (names are lower-cased).
        query_string: the raw query string, without ``?``.
        **extra: more scope keys (for example ``state={}``), overriding the defaults.

    Returns:
        A fresh scope dict.

    Raises:
        ValueError: a query string was given both in ``path`` and as ``query_string``.
    """
    pairs = headers.items() if isinstance(headers, dict) else headers
    if "?" in path:
        if query_string:
            raise ValueError("give the query string in path or as query_string, not both")
        path, _, query_string = path.partition("?")
    if isinstance(query_string, str):
        query_string = query_string.encode("latin-1")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query_string,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    scope.update(extra)
    return scope


class ASGIStream:
    """One request in flight: the messages the app sends, as it sends them.

    Made by :func:`stream_asgi`; do not build it directly.

    Attributes:
        messages: every message the app has sent so far, in order.
        status_code: the response status (``None`` before :meth:`start`).
        headers: the response headers (empty before :meth:`start`).
        complete: whether the app sent its final body message (``more_body`` false).
    """

    def __init__(
        self,
        receive_messages: MemoryObjectReceiveStream[Message],
        body: bytes,
    ) -> None:
        self.messages: list[Message] = []
        self.status_code: int | None = None
        self.headers: Headers = Headers()
        self.complete = False
        self._incoming = receive_messages
        self._request_body = body
        self._request_sent = False
        self._disconnected = anyio.Event()
        self._app_done = anyio.Event()
        self._app_error: BaseException | None = None
        self._collector: EventCollector | None = None

    # -- the app's side -----------------------------------------------------------------------

    async def _receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self._request_body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    # -- the test's side ----------------------------------------------------------------------

    async def _next_message(self) -> Message | None:
        try:
            message = await self._incoming.receive()
        except anyio.EndOfStream:
            return None
        self.messages.append(message)
        return message

    async def start(self) -> ASGIStream:
        """Wait for ``http.response.start`` and record the status and headers.

        Returns:
            This stream, for chaining.

        Raises:
            AssertionError: the app ended or sent something else first.
        """
        if self.status_code is not None:
            return self
        message = await self._next_message()
        if message is None:
            await self._raise_app_error()
            raise AssertionError("the app ended without starting a response")
        if message["type"] != "http.response.start":
            raise AssertionError(f"expected http.response.start, got {message['type']!r}")
        self.status_code = message["status"]
        self.headers = Headers(raw=list(message.get("headers", [])))
        return self

    async def receive_chunk(self) -> bytes | None:
        """Wait for the next ``http.response.body`` message and return its body.

        Returns:
            The body bytes (possibly empty), or ``None`` once the response is complete or the app
            has returned.
        """
        await self.start()
        if self.complete:
            return None
        message = await self._next_message()
        if message is None:
            return None
        if message["type"] != "http.response.body":
            raise AssertionError(f"expected http.response.body, got {message['type']!r}")
        if not message.get("more_body", False):
            self.complete = True
        body: bytes = message.get("body", b"")
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield each body chunk as the app sends it, until the response is complete."""
        while True:
            chunk = await self.receive_chunk()
            if chunk is None:
                return
            yield chunk

    async def read_all(self) -> bytes:
        """Read body chunks until the response is complete and return them joined."""
        return b"".join([chunk async for chunk in self.iter_chunks()])

    @property
    def body_messages(self) -> list[Message]:
        """The ``http.response.body`` messages received so far."""
        return [m for m in self.messages if m["type"] == "http.response.body"]

    def events(self) -> EventCollector:
        """Return the stream's :class:`EventCollector` (one per stream, created on first use)."""
        if self._collector is None:
            self._collector = EventCollector(self)
        return self._collector

    async def disconnect(self) -> None:
        """Make the app's next (or pending) ``receive()`` return ``http.disconnect``."""
        self._disconnected.set()
        await anyio.lowlevel.checkpoint()

    async def wait_closed(self) -> None:
        """Wait for the app to return, and re-raise what it raised, if anything."""
        await self._app_done.wait()
        await self._raise_app_error()

    @property
    def app_done(self) -> bool:
        """Whether the app has returned."""
        return self._app_done.is_set()

    async def _raise_app_error(self) -> None:
        await self._app_done.wait()
        error, self._app_error = self._app_error, None
        if error is not None:
            raise error


class EventCollector:
    """Parses a stream's body incrementally with :class:`~ssehub.wire.EventParser`.

    Args:
        stream: the stream to read from.

    Attributes:
        received: every event dispatched so far, including those already returned.
        parser: the parser (its ``last_event_id`` and ``retry`` are available to assertions).
    """

    def __init__(self, stream: ASGIStream) -> None:
        self.received: list[MessageEvent] = []
        self.parser = EventParser()
        self._stream = stream
        self._ready: list[MessageEvent] = []

    async def _fill(self) -> bool:
        chunk = await self._stream.receive_chunk()
        if chunk is None:
            return False
        events = list(self.parser.feed(chunk))
        self.received.extend(events)
        self._ready.extend(events)
        return True

    async def next_event(self, *, timeout: float | None = 5.0) -> MessageEvent:  # noqa: ASYNC109
        """Return the next dispatched event.

        Args:
            timeout: seconds to wait (``None`` for no limit).

        Raises:
            TimeoutError: no event within ``timeout``.
            anyio.EndOfStream: the response ended first.
        """
        with anyio.fail_after(timeout):
            while not self._ready:
                if not await self._fill():
                    raise anyio.EndOfStream
        return self._ready.pop(0)

    async def take(
        self,
        count: int,
        *,
        timeout: float | None = 5.0,  # noqa: ASYNC109 - a built-in guard keeps tests from hanging
    ) -> list[MessageEvent]:
        """Return the next ``count`` events.

        Raises:
            TimeoutError: they did not all arrive within ``timeout`` seconds.
            anyio.EndOfStream: the response ended first.
        """
        with anyio.fail_after(timeout):
            return [await self.next_event(timeout=None) for _ in range(count)]

    async def rest(self, *, timeout: float | None = 5.0) -> list[MessageEvent]:  # noqa: ASYNC109
        """Return every remaining event once the response is complete.

        Raises:
            TimeoutError: the response did not complete within ``timeout`` seconds.
        """
        with anyio.fail_after(timeout):
            while await self._fill():
                pass
        ready, self._ready = self._ready, []
        return ready


@asynccontextmanager
async def stream_asgi(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] | dict[str, str] = (),
    body: bytes = b"",
    scope: Scope | None = None,
    max_buffered_messages: float = math.inf,
    exit_timeout: float = 5.0,
) -> AsyncIterator[ASGIStream]:
    """Run one request against ``app`` and stream its response to the test.

    On exit the client disconnects (if the app is still running) and the app is awaited; an
    exception the app raised and the test did not collect with :meth:`ASGIStream.wait_closed`
    is re-raised then.

    Args:
        app: any ASGI 3 application, or an ASGI response object.
        path: request path.
        method: request method.
        headers: request headers.
        body: the request body, delivered in one ``http.request`` message.
        scope: a complete scope to use instead of building one from the arguments above.
        max_buffered_messages: how many sent messages may wait unread before the app's
            ``send()`` blocks (a slow client); unbounded by default.
        exit_timeout: seconds the app gets to return after the disconnect on exit; then it is
            cancelled.

    Yields:
        The :class:`ASGIStream` of this request.
    """
    if scope is None:
        scope = http_scope(path, method=method, headers=headers)
    outgoing: MemoryObjectSendStream[Message]
    incoming: MemoryObjectReceiveStream[Message]
    outgoing, incoming = anyio.create_memory_object_stream[Message](max_buffered_messages)
    stream = ASGIStream(incoming, body)

    async def send(message: Message) -> None:
        await outgoing.send(message)

    async def run_app() -> None:
        try:
            async with outgoing:
                await app(scope, stream._receive, send)
        except Exception as exc:  # noqa: BLE001 - handed to the test, re-raised on exit
            stream._app_error = exc
        finally:
            stream._app_done.set()

    with collapse_excgroups():
        async with anyio.create_task_group() as group, incoming:
            group.start_soon(run_app)
            try:
                yield stream
            finally:
                stream._disconnected.set()
                # Shielded (the test may be leaving through a cancellation) but bounded: keep
                # reading so an app blocked in send() sees the disconnect, and give it time to
                # return.
                with anyio.CancelScope(shield=True) as cleanup:
                    cleanup.deadline = anyio.current_time() + exit_timeout
                    await _drain(incoming, stream)
                    await stream._app_done.wait()
                if not stream.app_done:
                    group.cancel_scope.cancel()
    await stream._raise_app_error()


async def _drain(incoming: MemoryObjectReceiveStream[Message], stream: ASGIStream) -> None:
    async for message in incoming:
        stream.messages.append(message)
