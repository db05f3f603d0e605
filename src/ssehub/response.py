"""``EventSourceResponse``: a Server-Sent Events response for Starlette and FastAPI.

A drop-in for sse-starlette's class of the same name (same parameters, same meaning), built for
throughput and clean teardown:

* A producer task pulls items from the content, encodes them and appends the bytes to a bounded
  outbox; the sender takes *everything* pending at each wake-up and writes it with one ASGI
  ``send`` (coalescing). There is no task, lock or cancel scope per event.
* Content that implements :class:`ssehub._frames.FrameSource` (a broker subscription) hands over
  frames that are already encoded: no producer task, no re-encoding, one ``send`` per batch.
* Served by :class:`ssehub.uvicorn.HttpToolsProtocol`, a source that takes a writer (a broker
  subscription) is written to by its publisher directly while nothing is queued: no task
  wake-up and no ``send`` per event (see :mod:`ssehub._frames`). Such a stream waits with no
  cancel scope; one timer per event loop serves every such stream's pings
  (``ssehub._response._parked``).
* Headers and a first comment go out at once, so clients and proxies (and Starlette's
  ``GZipMiddleware``, which holds the headers back until the first body chunk) see the stream
  open before the first event exists.
* Pings are sent only when the stream has been idle for ``ping`` seconds, from a timer that sleeps
  until the next deadline (no busy loop; ``ping=0`` starts no timer).
* Shutdown needs no patching of the server: set ``shutdown_event`` (for example from a
  ``uvicorn.Server`` subclass or your own signal handling) and every stream that shares it gets
  ``shutdown_grace_period`` seconds to finish, then ends with a clean end of body.

The one deliberate difference from sse-starlette: the default line separator is ``"\\n"``
(sse-starlette writes ``"\\r\\n"``), because hand-written LF-only parsers break on CRLF while every
parser accepts LF. Pass ``sep="\\r\\n"`` for byte-identical output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeAlias

import anyio
import anyio.to_thread
from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ._exceptions import SendTimeoutError
from ._frames import DIRECT_WRITE, DirectWrite, FrameSource, FrameWriter, WritableFrameSource
from ._response._alarms import alarm_clock, running_loop
from ._response._encode import make_encoder
from ._response._excgroups import collapse_excgroups
from ._response._outbox import Outbox
from ._response._parked import ParkedStream
from .wire import SEPARATORS, ServerSentEvent

__all__ = ["Content", "ContentStream", "EventSourceResponse", "SendTimeoutError"]

logger = logging.getLogger("ssehub.response")

Content: TypeAlias = Any
"""One item of a stream: a ServerSentEvent, a dict of event fields, str data text, raw bytes,
or a number."""

ContentStream: TypeAlias = "AsyncIterable[Content] | Iterable[Content] | FrameSource"
"""What ``EventSourceResponse`` streams: async or sync iterables (including anyio memory object
receive streams) or a :class:`~ssehub._frames.FrameSource`."""


_ENCODERS: dict[str, Callable[[Any], bytes]] = {sep: make_encoder(sep) for sep in SEPARATORS}


# Header lines seen so far, each encoded once (bounded: a header with a value per request,
# such as an id, must not grow it forever; past the bound, lines are simply not shared).
_HEADERS: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_HEADERS_MAX = 256


# Never kept beyond the response: they carry per-user secrets.
_PRIVATE_HEADERS = frozenset({b"set-cookie", b"authorization", b"www-authenticate"})


def _shared_header(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    shared = _HEADERS.get(header)
    if shared is None:
        if len(_HEADERS) >= _HEADERS_MAX or header[0] in _PRIVATE_HEADERS:
            return header
        shared = _HEADERS[header] = header
    return shared


def _websocket_denial(send: Send) -> Send:
    # Same as Starlette's StreamingResponse: on a websocket scope, an HTTP response is a denial
    # response and its messages take the "websocket." prefix.
    async def wrapped(message: Message) -> None:
        if message["type"] in ("http.response.start", "http.response.body"):
            message = {**message, "type": "websocket." + message["type"]}
        await send(message)

    return wrapped


class EventSourceResponse(Response):
    """A streaming ``text/event-stream`` response (WHATWG HTML §9.2).

    Args:
        content: what to stream. An async iterable (async generator, anyio
            ``MemoryObjectReceiveStream``, ...), a sync iterable (iterated in a worker thread, one
            item per hop), or a :class:`~ssehub._frames.FrameSource` whose pre-encoded frames are
            sent as they are. Items may be :class:`~ssehub.ServerSentEvent` (sent with its own
            encoding), ``dict`` (keys ``data``, ``event``, ``id``, ``retry``, ``comment``;
            encoded with ``sep``; never mutated), ``str`` (data text), ``bytes`` (sent as is) or
            ``int``/``float`` (data text).
        status_code: HTTP status. Default 200.
        headers: extra headers; ``Cache-Control`` given here replaces the default ``no-store``.
        media_type: default ``text/event-stream`` (sent with ``; charset=utf-8``).
        background: a Starlette background task run after the stream ends.
        ping: seconds of idleness after which a comment is sent to keep proxies from closing the
            connection. Default 15 (below common proxy idle timeouts of 30-60 s); ``0`` disables
            pings.
        sep: line separator, ``"\\n"`` (default), ``"\\r\\n"`` or ``"\\r"``.
        ping_message_factory: returns the item sent as a ping (any content item kind); default a
            ``: ping - <UTC time>`` comment.
        data_sender_callable: a coroutine function started alongside the stream (for example one
            that feeds the memory stream given as ``content``); cancelled when the stream ends.
        send_timeout: seconds one ASGI ``send`` (data or ping) may take before the client is
            considered frozen; the stream then ends with :class:`~ssehub.SendTimeoutError`.
            ``None`` (default) waits forever. For a ``FrameSource`` (a broker subscription)
            the stream ends between ``send_timeout`` and 1.1 times ``send_timeout`` after the
            stuck send began: that tolerance lets one timer serve a busy stream.
        client_close_handler_callable: awaited with the ``http.disconnect`` message when the
            client goes away, before the generator is stopped.
        shutdown_event: an ``anyio.Event``; when it is set, the content gets
            ``shutdown_grace_period`` seconds to end on its own (generators may watch the same
            event to send a farewell event), then it is cancelled and the response ends cleanly
            with an empty final body. The grace period bounds the sending too, whatever
            ``send_timeout`` is: when it is over, a send still blocked on a client that does
            not read is abandoned (frames not yet sent are dropped, so the client never sees
            a gap hidden behind a later event), and the final empty body gets at most
            :attr:`SHUTDOWN_SEND_TIMEOUT` seconds; the response then returns and the server
            closes the connection. Share one event between all streams and set it when the
            server begins to shut down.
        shutdown_grace_period: seconds to wait after ``shutdown_event`` before cancelling the
            content and abandoning a blocked send; ``>= 0``, default 0.
        cleanup_timeout: seconds allowed to the content's ``aclose()`` (its ``finally`` blocks)
            when the stream is interrupted; ``None`` for no bound. Default 30.

    Raises:
        ValueError: an invalid ``sep``, ``shutdown_grace_period``, ``cleanup_timeout`` or
            ``ping``.
        TypeError: ``content`` is not iterable, or ``ping`` is not a number.

    The response raises :class:`~ssehub.SendTimeoutError` from the ASGI call when a send times
    out, and re-raises any exception of the content or of ``data_sender_callable`` (unwrapped
    from anyio's exception groups).
    """

    DEFAULT_PING_INTERVAL: ClassVar[float] = 15
    DEFAULT_SEPARATOR: ClassVar[str] = "\n"
    DEFAULT_CLEANUP_TIMEOUT: ClassVar[float] = 30.0
    SHUTDOWN_SEND_TIMEOUT: ClassVar[float] = 1.0
    """Seconds the last send after a shutdown may take (what was pending and the final empty
    body), so a frozen client cannot hold the server's shutdown; ``send_timeout`` if shorter."""
    _ENDS_SENDING: ClassVar[bool] = False
    """Whether the frame path lets :meth:`_end_sending` end its sending loop even without a
    ``shutdown_event`` (a subclass that ends its streams itself sets it): the generic loop
    then runs under a scope carrying that deadline, and a parked one bounds every send by it."""
    OPEN_COMMENT: ClassVar[str | None] = "ok"
    """Comment sent right after the headers (``: ok``); ``None`` in a subclass sends none."""

    media_type = "text/event-stream"
    _direct_write: DirectWrite | None = None  # the server's extension, when it offers one
    _frame_source: FrameSource | None = None
    _sync_content: Iterable[Any] | None = None
    _async_content: AsyncIterable[Any] | None = None
    _opened = False  # the start and the opening comment went out already (see _open)
    _body_send: Send | None = None  # a subclass's send for body messages (default: send)

    def __init__(  # noqa: PLR0917 - positional order is sse-starlette's
        self,
        content: ContentStream,
        status_code: int = 200,
        headers: Any = None,
        media_type: str | None = "text/event-stream",
        background: BackgroundTask | None = None,
        ping: float | None = None,
        sep: str | None = None,
        ping_message_factory: Callable[[], Any] | None = None,
        data_sender_callable: Callable[[], Coroutine[Any, Any, None]] | None = None,
        send_timeout: float | None = None,
        client_close_handler_callable: Callable[[Message], Awaitable[None]] | None = None,
        shutdown_event: anyio.Event | None = None,
        shutdown_grace_period: float = 0,
        cleanup_timeout: float | None = DEFAULT_CLEANUP_TIMEOUT,
    ) -> None:
        if sep is not None and sep not in SEPARATORS:
            raise ValueError(rf"sep must be one of '\n', '\r\n', '\r', got {sep!r}")
        if shutdown_grace_period < 0:
            raise ValueError("shutdown_grace_period must be >= 0")
        if cleanup_timeout is not None and cleanup_timeout < 0:
            raise ValueError("cleanup_timeout must be >= 0")
        self.sep: str = sep or self.DEFAULT_SEPARATOR
        # Only the attribute of the content's kind is set (the others stay the class's None):
        # an instance dict shares its keys with the class's other instances only up to 30
        # attributes, and each attribute fewer keeps idle streams smaller.
        if isinstance(content, FrameSource):
            self._frame_source = content
        elif isinstance(content, AsyncIterable):
            self._async_content = content
        elif isinstance(content, Iterable) and not isinstance(content, (str, bytes, dict)):
            self._sync_content = content
        else:
            raise TypeError(
                "content must be an async iterable, a sync iterable or a FrameSource, "
                f"not {type(content).__name__}"
            )
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.ping_interval = self.DEFAULT_PING_INTERVAL if ping is None else ping
        self.ping_message_factory = ping_message_factory
        self.data_sender_callable = data_sender_callable
        self.send_timeout = send_timeout
        self.client_close_handler_callable = client_close_handler_callable
        self._shutdown_event = shutdown_event
        self._shutdown_grace_period = shutdown_grace_period
        self._cleanup_timeout = cleanup_timeout
        self._last_activity = 0.0
        self._done: anyio.Event | None = None
        self._complete = False  # the final empty body went out
        self._in_send = False  # the items path's sender is inside a send
        # When sending must stop (anyio time): the end of a shutdown's grace period, or a
        # subclass's own deadline (see _end_sending); the sending loop's scope carries it.
        self._end_sending_at = math.inf
        # What _end_sending acts on: the sending loop's scope, or the parked loop.
        self._sender: anyio.CancelScope | ParkedStream | None = None
        self.active = True
        """False once the client disconnected or the stream ended (as in sse-starlette)."""

        merged = MutableHeaders()
        if headers is not None:
            merged.update(headers)
        # "no-store": no cache of any kind may keep an event stream; a caller may override it
        # (fan-out proxies that cache streams on purpose).
        merged.setdefault("Cache-Control", "no-store")
        # nginx buffers proxied responses unless told otherwise, which would hold events back.
        merged.setdefault("X-Accel-Buffering", "no")
        # No "Connection: keep-alive": it is hop-by-hop, forbidden in HTTP/2, and the server
        # decides it. No Content-Length: self.body is never set, so init_headers adds none.
        self.init_headers(merged)
        # Most streams send the same few header lines: they share one encoded tuple each
        # (the list stays the response's own, since MutableHeaders edits it in place).
        self.raw_headers = [_shared_header(header) for header in self.raw_headers]

    @property
    def ping_interval(self) -> float:
        """Seconds of idleness before a ping; 0 means no pings."""
        return self._ping_interval

    @ping_interval.setter
    def ping_interval(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("ping interval must be int or float")
        if value < 0:
            raise ValueError("ping interval must be >= 0 (0 disables ping)")
        self._ping_interval = value

    @property
    def _encode(self) -> Callable[[Any], bytes]:
        return _ENCODERS[self.sep]

    @property
    def body_iterator(self) -> Any:
        """The content being streamed (sse-starlette exposes it under this name)."""
        return self._frame_source or self._async_content or self._sync_content

    # -- ASGI entry point -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the content until it ends, the client leaves, or shutdown is requested.

        Raises:
            SendTimeoutError: a send took longer than ``send_timeout``.
        """
        if scope["type"] == "websocket":
            send = _websocket_denial(send)
        start: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        try:
            if scope["type"] == "http" and scope.get("method", "GET").upper() == "HEAD":
                # HEAD: same headers as GET, an empty body, and the content is never started
                # (an endless generator would otherwise keep the connection busy forever).
                await self._send(send, start)
                await self._send(
                    send, {"type": "http.response.body", "body": b"", "more_body": False}
                )
            elif (direct := self._direct_stream(scope)) is not None:
                # Called from here rather than from _stream: one coroutine frame less for
                # every idle stream.
                await self._stream_direct(send, direct)
            else:
                await self._stream(scope, receive, send, start)
        finally:
            self.active = False
            if self._frame_source is not None:
                # Whatever ended the response (even a failed first send), release the source.
                await self._close_frame_source(self._frame_source)
        if self.background is not None:
            await self.background()

    def _direct_stream(self, scope: Scope) -> DirectWrite | None:
        """The server's direct-write extension, when this response can stream through it."""
        if self._frame_source is None:
            return None
        direct: DirectWrite | None = scope.get("extensions", {}).get(DIRECT_WRITE)
        if direct is None:
            return None
        self._direct_write = direct  # _writer_for asks it for a writer
        if (
            isinstance(self._frame_source, WritableFrameSource)
            and self._shutdown_event is None
            and self.data_sender_callable is None
            and self.client_close_handler_callable is None
        ):
            return direct
        return None

    async def _stream(self, scope: Scope, receive: Receive, send: Send, start: Message) -> None:
        assert not self._opened, "only the direct path continues an opened stream"
        # Set when the content has ended; only a shutdown grace period waits for it, so idle
        # streams without one do not carry an event each.
        self._done = (
            anyio.Event()
            if self._shutdown_event is not None and self._shutdown_grace_period > 0
            else None
        )
        with collapse_excgroups():
            async with anyio.create_task_group() as group:
                group.start_soon(self._listen_for_disconnect, receive, group.cancel_scope)
                await self._send(send, start)
                if self.OPEN_COMMENT is not None:
                    opening = ServerSentEvent(comment=self.OPEN_COMMENT, sep=self.sep).encode()
                    await self._send_body(send, opening)
                if self.data_sender_callable is not None:
                    group.start_soon(self.data_sender_callable)
                if self._frame_source is not None:
                    # Bodies may take another send than the start (the hub's body lane, see
                    # hub/_lane.py).
                    body_send = self._body_send or send
                    writer = self._writer_for(body_send, self._frame_source)
                    await self._stream_frames(body_send, self._frame_source, group, writer)
                else:
                    await self._stream_items(send, group)
                group.cancel_scope.cancel()

    async def _stream_direct(self, send: Send, direct: DirectWrite) -> None:
        # The server reports the disconnect itself (DirectWrite.on_disconnect), and ending the
        # source ends the sending loop: no task group, no task parked in receive() and no
        # cancel scope for it, so one task per idle stream. A send blocked on a full buffer
        # returns too: uvicorn releases it when the connection is lost.
        source = self._frame_source
        assert isinstance(source, WritableFrameSource)
        direct.on_disconnect(self._connection_lost)
        try:
            if not self._opened:
                await self._open(send)
            send = self._body_send or send
            writer = direct.writer_for(send)
            loop = running_loop() if writer is not None else None
            if writer is None or loop is None:
                await self._stream_frames(send, source, None, writer)
                return
            # Parked in receive_frames() with no cancel scope; the alarm wakes it for pings
            # and the end of sending (see _response/_parked.py).
            self._last_activity = loop.time()
            parked = ParkedStream(alarm_clock(loop), self, source, writer)
            self._sender = parked
            await parked.run(send)
        finally:
            direct.on_disconnect(None)

    def _connection_lost(self) -> None:
        # A method, not a closure: a bound method costs less per idle stream.
        self.active = False
        logger.debug("client disconnected; stopping the stream")
        source = self._frame_source
        if isinstance(source, WritableFrameSource):
            source.close()

    async def _open(self, send: Send) -> None:
        """Send the response start and the opening comment (a subclass may do it through
        another ``send`` than the body's, then set ``_opened``)."""
        await self._send(
            send,
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            },
        )
        if self.OPEN_COMMENT is not None:
            opening = ServerSentEvent(comment=self.OPEN_COMMENT, sep=self.sep).encode()
            await self._send_body(send, opening)

    # -- sending ----------------------------------------------------------------------------

    async def _send(self, send: Send, message: Message) -> None:
        timeout = self.send_timeout
        if timeout is None:
            await send(message)
            return
        with anyio.move_on_after(timeout) as scope:
            await send(message)
        if scope.cancel_called:
            raise SendTimeoutError(f"client did not accept data within {timeout} s")

    async def _send_body(self, send: Send, body: bytes) -> None:
        await self._send(send, {"type": "http.response.body", "body": body, "more_body": True})
        self._last_activity = anyio.current_time()

    async def _finish(self, send: Send) -> None:
        self.active = False
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        self._complete = True

    def _shutdown_send_timeout(self) -> float:
        timeout = self.SHUTDOWN_SEND_TIMEOUT
        return timeout if self.send_timeout is None else min(timeout, self.send_timeout)

    def _end_sending(self, at: float) -> None:
        """Stop sending at ``at`` (anyio time, or earlier if already asked): a send still
        blocked then is abandoned and the stream ends as after a shutdown. Idempotent."""
        self._end_sending_at = min(self._end_sending_at, at)
        sender = self._sender
        if isinstance(sender, ParkedStream):
            sender.end_at(self._end_sending_at)
        elif sender is not None:
            sender.deadline = self._end_sending_at

    async def _finish_after_shutdown(self, send: Send, pending: bytes) -> None:
        # The grace period is over and the stream was cut: end the body (with the frames that
        # were waiting, when they can follow what was sent) if the client takes it soon, and
        # otherwise return anyway and let the server close the connection.
        self.active = False
        with anyio.move_on_after(self._shutdown_send_timeout()) as scope:
            await send({"type": "http.response.body", "body": pending, "more_body": False})
            self._complete = True
        if scope.cancel_called:
            logger.debug("shutdown: the client did not take the end of the stream; leaving it")

    def _ping_bytes(self) -> bytes:
        if self.ping_message_factory is not None:
            return self._encode(self.ping_message_factory())
        stamp = datetime.now(timezone.utc)
        return ServerSentEvent(comment=f"ping - {stamp}", sep=self.sep).encode()

    # -- generic path: producer task + coalescing outbox -------------------------------------

    async def _stream_items(self, send: Send, group: anyio.abc.TaskGroup) -> None:
        outbox = Outbox()
        stop = anyio.CancelScope()  # cancelled by the shutdown watcher
        if self._async_content is not None:
            group.start_soon(self._produce_async, self._async_content, outbox, stop)
        else:
            assert self._sync_content is not None
            group.start_soon(self._produce_sync, self._sync_content, outbox, stop)
        if self._ping_interval > 0:
            group.start_soon(self._pinger, outbox)
        if self._shutdown_event is None:
            await self._pump(send, outbox)
            return
        # Cancelled by the shutdown watcher at the end of the grace period: without it, a
        # send blocked on a client that never reads would keep the stream (and the server's
        # shutdown) waiting forever when send_timeout is None.
        group.start_soon(self._watch_shutdown, self._shutdown_event, stop)
        with anyio.CancelScope(deadline=self._end_sending_at) as self._sender:
            await self._pump(send, outbox)
        if not self._complete:
            # A send cut mid-way may not have reached the client, so what follows it is
            # dropped too: a later event arriving without the one before would hide the gap
            # from a client that resumes with Last-Event-ID.
            await self._finish_after_shutdown(send, b"" if self._in_send else outbox.take_nowait())

    async def _pump(self, send: Send, outbox: Outbox) -> None:
        take = outbox.take
        while True:
            body = await take()
            if body is None:
                break
            self._in_send = True
            await self._send_body(send, body)
            self._in_send = False
        self._in_send = True
        await self._finish(send)

    async def _produce_async(
        self, content: AsyncIterable[Any], outbox: Outbox, stop: anyio.CancelScope
    ) -> None:
        encode = self._encode
        put = outbox.put_nowait
        iterator = content.__aiter__()
        try:
            with stop:
                async for item in iterator:
                    put(encode(item))
                    if outbox.full:
                        await outbox.drained()
        finally:
            try:
                await self._close_async(iterator)
            finally:
                outbox.close()

    async def _produce_sync(
        self, content: Iterable[Any], outbox: Outbox, stop: anyio.CancelScope
    ) -> None:
        encode = self._encode
        iterator = iter(content)
        done = object()

        def next_chunk() -> Any:
            # Runs in a worker thread: a blocking generator never stalls the event loop. The
            # item is encoded there too, off the loop.
            for item in iterator:
                return encode(item)
            return done

        try:
            with stop:
                while True:
                    chunk = await anyio.to_thread.run_sync(next_chunk)
                    if chunk is done:
                        break
                    outbox.put_nowait(chunk)
                    if outbox.full:
                        await outbox.drained()
        finally:
            self._finished()
            try:
                close = getattr(iterator, "close", None)
                if close is not None:
                    with self._cleanup_scope() as scope:
                        await anyio.to_thread.run_sync(close)
                    self._warn_if_cut(scope)
            finally:
                outbox.close()

    async def _pinger(self, outbox: Outbox) -> None:
        interval = self._ping_interval
        self._last_activity = anyio.current_time()
        while True:
            now = anyio.current_time()
            due = self._last_activity + interval
            if now < due:
                await anyio.sleep(due - now)
                continue
            if not outbox.pending:
                outbox.put_nowait(self._ping_bytes())
            self._last_activity = now

    # -- FrameSource fast path ---------------------------------------------------------------

    async def _stream_frames(
        self,
        send: Send,
        source: FrameSource,
        group: anyio.abc.TaskGroup | None,
        writer: FrameWriter | None,
    ) -> None:
        # Idle time counts from now: the opening comment (when there is one) just went out.
        self._last_activity = anyio.current_time()
        if self._shutdown_event is None and not self._ENDS_SENDING:
            while await self._send_frames(send, source, writer):
                pass  # a ping or a batch caught by a timer firing went out: start a new timer
            await self._finish(send)
            return
        # One scope for receiving and sending, its deadline set by _end_sending (the shutdown
        # watcher's end of the grace period, or a subclass): a send blocked on a frozen
        # client is abandoned then.
        if self._shutdown_event is not None:
            assert group is not None  # _stream_direct is only taken without a shutdown event
            group.start_soon(self._watch_shutdown, self._shutdown_event, None)
        with anyio.CancelScope(deadline=self._end_sending_at) as self._sender:
            while await self._send_frames(send, source, writer):
                pass
            self._finished()
            await self._finish(send)
        if not self._complete:
            await self._finish_after_shutdown(send, b"")

    def _writer_for(self, send: Send, source: FrameSource) -> FrameWriter | None:
        # Direct writes need the server's extension, a source that takes a writer, and the
        # server's own send (see ssehub._frames); anything else streams through send alone.
        direct = self._direct_write
        if direct is None or not hasattr(source, "attach_writer"):
            return None
        return direct.writer_for(send)

    async def _send_frames(
        self, send: Send, source: FrameSource, writer: FrameWriter | None = None
    ) -> bool:
        """Send batches of frames until the source ends or the timer scope fires.

        With a ``writer``, the source writes live frames itself while this loop waits, and
        the loop sends only what the writer could not take (in order: the writer is detached
        while a send is pending).

        Returns:
            ``False`` once the source has ended; ``True`` after the timer fired (a ping was
            sent, the batch that arrived just as it fired went out, or it fired early and a
            new timer must be started), to be called again.

        Raises:
            SendTimeoutError: a send took longer than ``send_timeout``.
        """
        interval = self._ping_interval
        timeout = self.send_timeout
        receive_frames = source.receive_frames
        now = anyio.current_time
        sending = False
        late: bytes | None = None
        # One timer scope serves every wait and every send of this loop, and its deadline
        # moves as rarely as possible: each move cancels a timer handle and schedules a new
        # one on the event loop, and two moves per event (ping deadline before each wait,
        # send deadline before each send) were the largest cost per delivery in fan-out.
        #
        # The invariants: while a send is pending the deadline is at least send_timeout
        # after its start (so it never cuts a send that is not late) and at most
        # send_timeout + slack after it (so a frozen client is shed in time); while waiting
        # it is no later than the ping's due time. Moving it forward with a slack of a tenth
        # of send_timeout means a busy stream moves it about once per slack period instead
        # of once per event, as long as 1.1 x send_timeout is below ping (the hub's defaults:
        # 10 s and 15 s). Otherwise (no send timeout, or pings more frequent than it) the
        # deadline still moves before each wait and each send, as it must: a ping deadline
        # would otherwise cut a send. When the timer fires early during a wait (the stream was not
        # idle for a whole ping interval), the caller simply starts a new timer.
        # receive_frames() is cancellation-safe, so a timer firing during a wait loses
        # nothing.
        slack = 0.0 if timeout is None else timeout / 10
        long_sends = interval > 0 and (timeout is None or timeout + slack >= interval)
        last_send = self._last_activity
        attach = getattr(source, "attach_writer", None) if writer is not None else None
        with anyio.CancelScope() as timer:
            timer.deadline = last_send + interval if interval > 0 else math.inf
            while True:
                sending = False
                if interval > 0 and timer.deadline > last_send + interval:
                    timer.deadline = last_send + interval
                if attach is None:
                    frames = await receive_frames()
                else:
                    attach(writer)
                    try:
                        frames = await receive_frames()
                    finally:
                        attach(None)
                if not frames:
                    return False
                body = frames[0] if len(frames) == 1 else b"".join(frames)
                if timer.cancel_called:
                    # The timer fired as these frames arrived (no checkpoint since): send
                    # them outside this cancelled scope.
                    late = body
                    break
                sending = True
                last_send = now()
                if timeout is None:
                    if timer.deadline != math.inf:
                        timer.deadline = math.inf
                elif not last_send + timeout <= timer.deadline <= last_send + timeout + slack:
                    timer.deadline = last_send + timeout + slack
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if long_sends:
                    # A send may outlast the ping interval: count idleness from its end, or a
                    # slow send would be followed at once by a ping. Otherwise its start is
                    # close enough, and saves a clock read (an async-library look-up) per event.
                    last_send = now()
                self._last_activity = last_send
        if sending:
            raise SendTimeoutError(f"client did not accept data within {timeout} s")
        if writer is not None and writer.last_write > self._last_activity:
            self._last_activity = writer.last_write  # frames written directly count as activity
        if late is None and (interval <= 0 or now() < self._last_activity + interval):
            return True  # fired before the stream was idle for a whole ping interval
        await self._send_body(send, self._ping_bytes() if late is None else late)
        return True

    async def _close_frame_source(self, source: FrameSource) -> None:
        with self._cleanup_scope() as scope:
            try:
                await source.aclose()
            except Exception:
                logger.exception("error closing the frame source")
        self._warn_if_cut(scope)

    # -- disconnect, shutdown, cleanup -------------------------------------------------------

    async def _listen_for_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.active = False
                logger.debug("client disconnected; stopping the stream")
                if self.client_close_handler_callable is not None:
                    await self.client_close_handler_callable(message)
                scope.cancel()
                return

    def _finished(self) -> None:
        if self._done is not None:
            self._done.set()

    async def _watch_shutdown(self, event: anyio.Event, stop: anyio.CancelScope | None) -> None:
        """End the stream ``shutdown_grace_period`` seconds after ``event`` is set.

        ``stop`` (the producer's scope, ``None`` on the frame path) is cancelled once the grace
        period is over or the content has ended; sending ends at the end of the grace period
        (:meth:`_end_sending`), so a send blocked on a frozen client is abandoned then.
        """
        await event.wait()
        end = anyio.current_time() + self._shutdown_grace_period
        if self._done is not None:
            # Let the content finish by itself (a farewell event) before cancelling it.
            with anyio.move_on_after(self._shutdown_grace_period):
                await self._done.wait()
        logger.debug("shutdown requested; ending the stream")
        if stop is not None:
            stop.cancel()
        # The sender keeps the rest of the grace period to deliver what the content sent
        # before it ended (a farewell); a deadline already past cancels at once.
        self._end_sending(end)

    def _cleanup_scope(self) -> anyio.CancelScope:
        # Shielded so the cleanup runs even inside a cancelled task, and bounded because nothing
        # outside a shield can cancel it (a generator stuck in its finally would hang forever).
        timeout = self._cleanup_timeout
        deadline = float("inf") if timeout is None else anyio.current_time() + timeout
        return anyio.CancelScope(shield=True, deadline=deadline)

    def _warn_if_cut(self, scope: anyio.CancelScope) -> None:
        if scope.cancel_called:
            logger.warning("content cleanup cancelled after %s seconds", self._cleanup_timeout)

    async def _close_async(self, iterator: AsyncIterator[Any]) -> None:
        self._finished()
        aclose = getattr(iterator, "aclose", None)
        if aclose is None:
            return
        with self._cleanup_scope() as scope:
            try:
                await aclose()
            except Exception:
                logger.exception("error closing the content iterator")
        self._warn_if_cut(scope)
