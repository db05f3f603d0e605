"""``EventSourceResponse``: a Server-Sent Events response for Starlette and FastAPI.

A drop-in for sse-starlette's class of the same name (same parameters, same meaning), built for
throughput and clean teardown (design: docs/ARCHITECTURE.md; guide: docs/response.md). The one
deliberate difference: the default line separator is ``"\\n"``, not ``"\\r\\n"``, since every
parser accepts LF and hand-written LF-only ones break on CRLF; ``sep="\\r\\n"`` gives
byte-identical output.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Iterator
from datetime import datetime, timezone
from functools import partial
from typing import Any, ClassVar, Final, TypeAlias

import anyio
from anyio.to_thread import run_sync
from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ._exceptions import SendTimeoutError
from ._excgroups import single_exception
from ._frames import FrameSource
from ._response import _shutdown
from ._response._disconnect import DisconnectWatch
from ._response._encode import make_encoder
from ._response._outbox import Outbox
from ._response._pump import Pump
from ._response._shutdown import drain_streams, shutdown_streams
from .wire import SEPARATORS, ServerSentEvent

__all__ = [
    "Content",
    "ContentStream",
    "EventSourceResponse",
    "SendTimeoutError",
    "drain_streams",
    "shutdown_streams",
]

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

logger = logging.getLogger("ssehub.response")

Content: TypeAlias = Any
"""One item of a stream: a ServerSentEvent, a dict of event fields, str data text, raw bytes,
a number, or data sent as JSON (list, tuple, dataclass, pydantic model, msgspec Struct)."""

ContentStream: TypeAlias = "AsyncIterable[Content] | Iterable[Content] | FrameSource"
"""What ``EventSourceResponse`` streams: async or sync iterables (including anyio memory object
receive streams) or a :class:`~ssehub._frames.FrameSource`."""


_ENCODERS: dict[str, Callable[[Any], bytes]] = {sep: make_encoder(sep) for sep in SEPARATORS}


def _websocket_denial(send: Send) -> Send:
    # Same as Starlette's StreamingResponse: on a websocket scope, an HTTP response is a denial
    # response and its messages take the "websocket." prefix.
    async def wrapped(message: Message) -> None:
        if message["type"] in ("http.response.start", "http.response.body"):
            message = {**message, "type": "websocket." + message["type"]}
        await send(message)

    return wrapped


# Shared constants, not bytes made per response: an idle stream keeps its response (and so its
# headers) for hours. "no-store": no cache of any kind may keep an event stream; a caller may
# override it (fan-out proxies that cache streams on purpose). nginx buffers proxied responses
# unless told otherwise, which would hold events back.
_DEFAULT_HEADERS: Final = ((b"cache-control", b"no-store"), (b"x-accel-buffering", b"no"))
_EVENT_STREAM_TYPE: Final = (b"content-type", b"text/event-stream; charset=utf-8")


class EventSourceResponse(Response):
    """A streaming ``text/event-stream`` response (WHATWG HTML §9.2).

    Args:
        content: what to stream: an async iterable (async generator, anyio
            ``MemoryObjectReceiveStream``, ...), a sync iterable (iterated in a worker thread, one
            item per hop), or a :class:`~ssehub._frames.FrameSource` whose pre-encoded frames are
            sent as they are. Items may be :class:`~ssehub.ServerSentEvent` (its own encoding),
            ``dict`` (keys ``data``, ``event``, ``id``, ``retry``, ``comment``; encoded with
            ``sep``; never mutated), ``str``, ``int`` or ``float`` (data text), ``bytes`` (sent
            as is), or data sent as JSON (list, tuple, dataclass, pydantic model, msgspec Struct).
        status_code: HTTP status. Default 200.
        headers: extra headers; ``Cache-Control`` given here replaces the default ``no-store``.
        media_type: default ``text/event-stream`` (sent with ``; charset=utf-8``).
        background: a Starlette background task run after the stream ends.
        ping: seconds of idleness before a comment is sent to keep proxies from closing the
            connection; default 15 (below common proxy idle timeouts of 30-60 s), ``0`` for none.
        sep: line separator, ``"\\n"`` (default), ``"\\r\\n"`` or ``"\\r"``.
        ping_message_factory: returns the item sent as a ping (any content item kind); default a
            ``: ping - <UTC time>`` comment.
        data_sender_callable: a coroutine function started alongside the stream (for example one
            that feeds the memory stream given as ``content``); cancelled when the stream ends.
        send_timeout: seconds one ASGI ``send`` (data or ping) may take before the client is
            considered frozen: the content is then closed (its ``finally`` runs, bounded by
            ``cleanup_timeout``) and the stream ends with :class:`~ssehub.SendTimeoutError`.
            ``None`` (default) waits forever.
        client_close_handler_callable: awaited with the ``http.disconnect`` message when the
            client goes away, before the generator is stopped.
        shutdown_event: an ``anyio.Event`` to share between streams: set it to shut them down,
            or let a shutdown set it (SIGINT, SIGTERM or :func:`ssehub.shutdown_streams`, on
            any server, as sse-starlette does), so a generator watching it can say goodbye.
            Once it is set, the content gets
            ``shutdown_grace_period`` seconds to end on its own (a generator may watch the same
            event to send a farewell event); then it is cancelled and the body ends cleanly with
            an empty final body. The grace period bounds sending too, whatever ``send_timeout``
            is: a send still blocked then on a client that does not read is abandoned (frames
            not yet sent are dropped, so the client never sees a gap hidden behind a later
            event), the final body gets at most :attr:`SHUTDOWN_SEND_TIMEOUT` seconds, and the
            response returns for the server to close the connection.
        shutdown_grace_period: seconds to wait after a shutdown (``shutdown_event``, a signal,
            :meth:`shutdown`) before cancelling the content and abandoning a blocked send;
            ``>= 0``, default 0.
        cleanup_timeout: seconds allowed to the content's ``aclose()`` (its ``finally`` blocks)
            when the stream is interrupted; ``None`` for no bound. Default 30.

    Raises:
        ValueError: an invalid ``sep``, ``shutdown_grace_period``, ``cleanup_timeout`` or ``ping``.
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
    OPEN_COMMENT: ClassVar[str | None] = "ok"
    """Comment sent right after the headers (``: ok``); ``None`` in a subclass sends none."""

    media_type = "text/event-stream"
    _frame_source: FrameSource | None = None
    _sync_content: Iterable[Any] | None = None
    _async_content: AsyncIterable[Any] | None = None

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
        # Only the attribute of the content's kind is set (the others stay the class's None).
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
        self._pump: Pump | None = None  # while streaming
        self.active = True
        """False once the client disconnected or the stream ended (as in sse-starlette)."""

        raw: list[tuple[bytes, bytes]] = []
        if headers:
            merged = MutableHeaders()
            merged.update(headers)
            raw = merged.raw
        names = {name for name, _ in raw}
        raw += [header for header in _DEFAULT_HEADERS if header[0] not in names]
        # No "Connection: keep-alive": it is hop-by-hop, forbidden in HTTP/2, and the server
        # decides it. No Content-Length: the body is a stream. The Content-Type as Starlette's
        # init_headers writes it (a charset for text/ types); the default one shared, as above.
        if b"content-type" not in names and self.media_type is not None:
            content_type = self.media_type
            if content_type.startswith("text/") and "charset=" not in content_type.lower():
                content_type += "; charset=" + self.charset
            header = (b"content-type", content_type.encode("latin-1"))
            raw.append(_EVENT_STREAM_TYPE if header == _EVENT_STREAM_TYPE else header)
        self.raw_headers = raw

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
    def body_iterator(self) -> Any:
        """The content being streamed (sse-starlette exposes it under this name)."""
        return self._frame_source or self._async_content or self._sync_content

    # -- ASGI entry point -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the content until it ends, the client leaves, or a shutdown ends it.

        Raises:
            SendTimeoutError: a send took longer than ``send_timeout``.
        """
        # One method for the whole stream, not a chain of them: an idle stream keeps every
        # suspended frame between the server and the pump alive for hours.
        if scope["type"] == "websocket":
            send = _websocket_denial(send)
        head = scope["type"] == "http" and scope.get("method", "GET").upper() == "HEAD"
        try:
            source = self._frame_source
            outbox: Outbox | None = None
            if head:
                # HEAD: same headers as GET, an empty body, and the content is never started
                # (an endless generator would otherwise keep the connection busy forever).
                source = Outbox()
                source.close()
            elif source is None:
                source = outbox = Outbox()
            else:
                prepare = getattr(source, "prepare", None)
                if prepare is not None:
                    await prepare()  # a subscription fetches its replay before the headers
                    prepare = None
            pump = Pump(
                send,
                source,
                ping=self._ping_interval,
                ping_bytes=self._ping_bytes,
                send_timeout=self.send_timeout,
                final_timeout=self._shutdown_send_timeout(),
            )
            source = None
            failure: BaseException | None = None
            if head:
                await pump.run(self._start_message(), [])
            else:
                self._pump = pump
                event = self._shutdown_event
                try:
                    # A stream that starts after a shutdown of its loop ends at once (its
                    # start, the opening comment, the end of the body); one whose event is
                    # set already gets its grace period, as when the event is set later.
                    if _shutdown.register(self._end_for_loop_shutdown):
                        self._end_for_loop_shutdown(0)
                    if event is not None and _shutdown.watch(event, self.shutdown):
                        self.shutdown()
                    async with DisconnectWatch(receive, self._client_left):
                        if outbox is None and self.data_sender_callable is None:
                            # A frame source alone (a broker subscription): no task of its own.
                            await pump.run(self._start_message(), self._opening())
                        else:
                            async with anyio.create_task_group() as group:
                                # The content starts with the response, not after the first
                                # send completes (a client that never reads must still see
                                # its generator cleaned up).
                                if outbox is not None:
                                    group.start_soon(
                                        self._produce_async
                                        if self._async_content is not None
                                        else self._produce_sync,
                                        outbox,
                                    )
                                if self.data_sender_callable is not None:
                                    group.start_soon(self.data_sender_callable)
                                await pump.run(self._start_message(), self._opening())
                                group.cancel_scope.cancel()
                except BaseExceptionGroup as group:
                    # As Starlette's StreamingResponse: anyio task groups wrap failures in a
                    # group, middleware (and code written for sse-starlette) expects the bare
                    # exception. It is raised below, outside this handler, so its own context
                    # stays as it was.
                    failure = single_exception(group)
                    if failure is None:
                        raise
                except anyio.get_cancelled_exc_class():
                    # Cancelled from outside (a server ending its own grace period: hypercorn,
                    # uvicorn's --timeout-graceful-shutdown): a clean end of the body still tells
                    # the client to reconnect rather than report an error.
                    if pump.opened and not pump.stopped and not pump.sent_final:
                        # A client already gone (OSError, as ASGI allows) must not replace
                        # the cancellation the server asked for.
                        with contextlib.suppress(Exception):
                            await self._send_final(send, shield=True)
                    raise
                finally:
                    _shutdown.unregister(self._end_for_loop_shutdown)
                    if event is not None:
                        _shutdown.unwatch(event, self.shutdown)
                    self._pump = None
                    self.active = False
            if outbox is not None and failure is None:
                # The content failed after the stream had ended (a disconnect, a send timeout):
                # its error still surfaces, as it did when it cancelled the stream.
                failure = outbox.leftover_error()
            # Raised here, inside the note-adding handler below: a method of their own would be
            # one more frame per idle stream.
            if failure is not None:
                raise failure  # noqa: TRY301
            if pump.timed_out:
                raise SendTimeoutError(  # noqa: TRY301
                    f"client did not accept data within {self.send_timeout} s"
                )
            # A send was cut when sending had to end: end the body if the client takes it soon
            # (frames not yet sent are dropped: a later event arriving without the one before
            # would hide the gap from a client that resumes with Last-Event-ID), and otherwise
            # return anyway and let the server close the connection.
            if pump.cut and not pump.sent_final and not await self._send_final(send):
                logger.debug("shutdown: the client did not take the end of the stream; leaving it")
        except Exception as exc:
            # The server logs it without saying which request's stream failed: say so (the
            # content's error surfaces here, long after the endpoint returned).
            if hasattr(exc, "add_note") and not isinstance(exc, SendTimeoutError):
                exc.add_note(f"in the event stream of {scope.get('method')} {scope.get('path')}")
            raise
        finally:
            self.active = False
            if self._frame_source is not None:
                # Whatever ended the response (even a failed first send), release the source.
                await self._close(self._frame_source.aclose, "frame source")
            elif head:
                await self._close_unstarted()
        if self.background is not None:
            await self.background()

    def _start_message(self) -> Message:
        headers = self.raw_headers
        return {"type": "http.response.start", "status": self.status_code, "headers": headers}

    def _opening(self) -> list[bytes]:
        comment = self.OPEN_COMMENT
        return [] if comment is None else [ServerSentEvent(comment=comment, sep=self.sep).encode()]

    async def _client_left(self, message: Message) -> None:
        self.active = False
        logger.debug("client disconnected; stopping the stream")
        try:
            if self.client_close_handler_callable is not None:
                await self.client_close_handler_callable(message)
        finally:
            # Even when the handler fails (its error is raised from the response).
            if (pump := self._pump) is not None:
                pump.abort()

    def shutdown(self, grace: float | None = None) -> None:
        """End the stream as for a server shutdown; idempotent, from the event loop's thread.

        The content gets ``grace`` seconds (default ``shutdown_grace_period``) to end by
        itself; then what it produced goes out with a clean end of the body (within
        :attr:`SHUTDOWN_SEND_TIMEOUT` seconds), and the content is cancelled. Does nothing
        before the stream runs or after it ended (:func:`ssehub.shutdown_streams` also ends
        streams that start later).
        """
        if (pump := self._pump) is not None:
            logger.debug("shutdown requested; ending the stream")
            pump.end_after(self._shutdown_grace_period if grace is None else grace)

    def _end_for_loop_shutdown(self, grace: float | None = None) -> None:
        # A shutdown of the whole event loop (a signal, shutdown_streams()) also sets the
        # shutdown_event, as sse-starlette does: a generator watching it may say goodbye.
        self.shutdown(grace)
        event = self._shutdown_event
        if event is not None and not event.is_set():
            event.set()

    # -- sending ----------------------------------------------------------------------------

    def _shutdown_send_timeout(self) -> float:
        timeout = self.SHUTDOWN_SEND_TIMEOUT
        return timeout if self.send_timeout is None else min(timeout, self.send_timeout)

    async def _send_final(self, send: Send, *, shield: bool = False) -> bool:
        """Send the final empty body within the shutdown's send timeout; ``False`` if cut."""
        with anyio.CancelScope(shield=shield) as scope:
            scope.deadline = anyio.current_time() + self._shutdown_send_timeout()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return not scope.cancel_called

    def _ping_bytes(self) -> bytes:
        if self.ping_message_factory is not None:
            return _ENCODERS[self.sep](self.ping_message_factory())
        stamp = datetime.now(timezone.utc)
        return ServerSentEvent(comment=f"ping - {stamp}", sep=self.sep).encode()

    # -- producers: generators and sync iterables into the outbox ----------------------------

    async def _produce_async(self, outbox: Outbox) -> None:
        assert self._async_content is not None
        encode = _ENCODERS[self.sep]
        put = outbox.put_nowait
        iterator = self._async_content.__aiter__()
        failure: Exception | None = None
        try:
            async for item in iterator:
                put(encode(item))
                if outbox.paused:
                    await outbox.room()
        except anyio.get_cancelled_exc_class() as exc:
            # anyio's task group keeps the cancellation in a reference cycle: with its
            # traceback, the content's frames (and whatever the user's generator holds, such
            # as a broker subscription) would wait for the cyclic garbage collector.
            exc.__traceback__ = None
            raise
        except Exception as exc:  # noqa: BLE001 - the pump raises it, after what came before
            failure = exc
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await self._close(aclose, "content iterator")
        self._end_outbox(outbox, failure)

    @staticmethod
    def _end_outbox(outbox: Outbox, failure: Exception | None) -> None:
        # What the content yielded before an error still goes out; then the error ends the
        # response without a clean end of the body, so the client sees a broken stream, not
        # a finished one it would reconnect to forever.
        if failure is None:
            outbox.close()
        else:
            outbox.fail(failure)

    async def _produce_sync(self, outbox: Outbox) -> None:
        assert self._sync_content is not None
        encode = _ENCODERS[self.sep]
        iterator = iter(self._sync_content)
        done = object()
        running = threading.Lock()  # held while a worker thread runs the iterator
        closing = False

        def close_if_idle() -> None:
            # A generator cannot be closed while a thread runs it: whoever finds it idle once
            # the stream is over closes it (here, or the abandoned call when it returns).
            close = getattr(iterator, "close", None)
            if close is not None and running.acquire(blocking=False):
                try:
                    close()
                finally:
                    running.release()

        def next_chunk() -> Any:
            # Runs in a worker thread: a blocking generator never stalls the event loop. The
            # item is encoded there too, off the loop.
            with running:
                item = next(iterator, done)
                chunk = done if item is done else encode(item)
            if closing:
                close_if_idle()
            return chunk

        failure: Exception | None = None
        try:
            # Abandoned when cancelled: a generator blocked between items (on a queue.get())
            # must not hold the response, or the server's shutdown.
            while (chunk := await run_sync(next_chunk, abandon_on_cancel=True)) is not done:
                outbox.put_nowait(chunk)
                if outbox.paused:
                    await outbox.room()
        except Exception as exc:  # noqa: BLE001 - as in _produce_async
            failure = exc
        finally:
            closing = True
            with self._bounded_cleanup():
                await run_sync(close_if_idle, abandon_on_cancel=True)
        self._end_outbox(outbox, failure)

    # -- cleanup -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _bounded_cleanup(self) -> Iterator[None]:
        # Shielded so the cleanup runs even inside a cancelled task, and bounded because nothing
        # outside a shield can cancel it (a generator stuck in its finally would hang forever).
        timeout = self._cleanup_timeout
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            yield
        if scope.cancel_called:
            logger.warning("content cleanup cancelled after %s seconds", timeout)

    async def _close_unstarted(self) -> None:
        # HEAD never starts the content, but an iterator (a generator, a memory stream) is
        # released all the same: the sender of a memory stream would otherwise wait for ever
        # for a reader. An iterable that is not its own iterator (a shared feed) is left
        # alone, as GET leaves it (GET closes only the iterator it made).
        content = self._async_content
        aclose = getattr(content, "aclose", None)
        if aclose is not None and hasattr(type(content), "__anext__"):
            await self._close(aclose, "content iterator")
        items = self._sync_content
        close = getattr(items, "close", None)
        if close is not None and hasattr(type(items), "__next__"):
            await self._close(partial(run_sync, close, abandon_on_cancel=True), "content")

    async def _close(self, aclose: Callable[[], Awaitable[object]], what: str) -> None:
        with self._bounded_cleanup():
            try:
                await aclose()
            except Exception:
                logger.exception("error closing the %s", what)
