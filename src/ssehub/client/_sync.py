"""``EventSource``: the blocking twin of :class:`~ssehub.client.AsyncEventSource`, on httpx.

Same state machine, same parser, same rules; iteration blocks the calling thread.
:meth:`EventSource.close` may be called from any thread: it wakes a pending reconnect wait at
once and, through the abortable network backend of :mod:`._abort`, abandons a connect in
progress and shuts down the sockets of the source's own client, so a thread blocked waiting for
response headers or reading the stream returns at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from .._exceptions import ConnectionFailed, EventTooLarge
from ..wire import DEFAULT_MAX_EVENT_SIZE, MessageEvent
from ._common import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    ReconnectCallback,
    SourceCore,
    classify_error,
    deliver,
    error_body_wanted,
    explain_failure,
    make_decoder,
    require_httpx,
    timeout_for,
    validate_url,
)
from ._reconnect import Action, Decision, ReadyState, ReconnectMachine, ReconnectPolicy

if TYPE_CHECKING:
    import httpx

    from ..protocols import EventProtocol, TypedEvent
    from ._abort import AbortableBackend

__all__ = ["EventSource"]

T = TypeVar("T")


class EventSource(Generic[T]):
    """Iterate the events of a ``text/event-stream`` URL, reconnecting like a browser (blocking).

    ::

        with EventSource("http://127.0.0.1:8000/events?topic=chat") as source:
            for event in source:
                print(event.id, event.event, event.data)

    The connection model, arguments and errors are those of
    :class:`~ssehub.client.AsyncEventSource` (``client`` is an ``httpx.Client`` here, and there
    is no ``clock``: waits use :func:`time.monotonic`).

    Calling :meth:`close` from the ``on_open`` or ``on_reconnect`` callback ends the iteration
    cleanly (no further request). :meth:`close` from another thread takes effect at once in
    every state: waiting to reconnect, connecting, waiting for the response headers, reading
    the stream (the source's own client runs on a network backend whose sockets ``close()``
    shuts down). With a ``client`` you pass, only the reconnect wait and an open stream's read
    are interrupted: a connection attempt in flight ends within ``connect_timeout`` /
    ``idle_timeout`` and its response is discarded unread. In every case no event is
    delivered and no request is made after ``close()``.
    """

    @overload
    def __init__(
        self: EventSource[MessageEvent],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.Client | None = ...,
        decoder: None = ...,
        protocol: None = ...,
        random: Callable[[], float] | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: EventSource[T],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.Client | None = ...,
        decoder: Callable[[MessageEvent], T],
        protocol: None = ...,
        random: Callable[[], float] | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: EventSource[TypedEvent[Any]],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.Client | None = ...,
        decoder: None = ...,
        protocol: EventProtocol,
        random: Callable[[], float] | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
    ) -> None: ...

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str = "",
        policy: ReconnectPolicy | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        client: httpx.Client | None = None,
        decoder: Callable[[MessageEvent], Any] | None = None,
        protocol: EventProtocol | None = None,
        random: Callable[[], float] | None = None,
        on_reconnect: ReconnectCallback | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        require_httpx()
        validate_url(url)
        machine = (
            ReconnectMachine(policy, last_event_id=last_event_id)
            if random is None
            else ReconnectMachine(policy, last_event_id=last_event_id, random=random)
        )
        decode, protocol_client = make_decoder(decoder, protocol, last_event_id)
        self._core: SourceCore[T] = SourceCore(
            url,
            headers,
            machine,
            max_event_size,
            cast("Callable[[MessageEvent], list[T]]", decode),
            protocol=protocol_client,
        )
        self._timeout = timeout_for(connect_timeout, idle_timeout)
        self._owns_client = client is None
        # An owned client runs on a backend whose sockets close() can shut down from another
        # thread, so a connect or a wait for headers ends at once; a given client cannot be.
        self._backend: AbortableBackend | None = None
        if client is None:
            from ._abort import abortable_client

            client, self._backend = abortable_client()
        self._client: httpx.Client = client
        self._on_reconnect = on_reconnect
        self._on_open = on_open
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._reconnect_at: float | None = None
        # The lock orders close() (any thread) against the iterating thread's state changes.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._busy = False
        self._finished = False

    # -- public state -------------------------------------------------------------------------

    @property
    def ready_state(self) -> ReadyState:
        """``CONNECTING``, ``OPEN`` or ``CLOSED``."""
        return self._core.machine.ready_state

    @property
    def last_event_id(self) -> str:
        """The last event ID string; sent as ``Last-Event-ID`` on the next connection."""
        return self._core.machine.last_event_id

    @property
    def reconnection_time(self) -> float:
        """The current reconnection time in seconds (the server's last valid ``retry:``)."""
        return self._core.machine.reconnection_time

    @property
    def url(self) -> str:
        """The URL of the current (or last) stream, after redirects."""
        return self._core.url

    @property
    def origin(self) -> str:
        """The origin of :attr:`url` (``scheme://host[:port]``), the browser's event origin."""
        return self._core.origin

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> EventSource[T]:
        return self

    def __next__(self) -> T:
        """Return the next event, connecting and reconnecting as needed.

        Raises:
            StopIteration: the source was closed (``close()`` or 204) or failed earlier.
            ConnectionFailed: the connection failed (status, content type, redirect error).
            EventTooLarge: an event exceeded ``max_event_size``; the source is closed.
            NegotiationError: the server refused the ``protocol``; the source is closed.
            Exception: whatever the decoder raises (``SchemaValidationError`` for a protocol).
            RuntimeError: another thread is already iterating the source.
        """
        with self._lock:
            if self._busy:
                raise RuntimeError("another thread is already iterating this EventSource")
            self._busy = True
        try:
            return self._next()
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._finish()

    def _next(self) -> T:
        core = self._core
        while True:
            if self._closed:
                raise StopIteration
            if core.ready:
                return deliver(core.ready.popleft())
            if core.pending:
                core.decode_next()
                continue
            if core.machine.closed:
                self._drop_response()
                raise StopIteration
            if self._response is None:
                if self._reconnect_at is not None:
                    remaining = self._reconnect_at - time.monotonic()
                    # Bounded: Event.wait() overflows past threading.TIMEOUT_MAX.
                    remaining = min(remaining, threading.TIMEOUT_MAX)
                    if remaining > 0 and self._wake.wait(remaining):
                        raise StopIteration  # close() woke us
                    self._reconnect_at = None
                self._connect()
            else:
                self._read()

    def _connect(self) -> None:
        core = self._core
        request = self._client.build_request(
            "GET", core.request_url, headers=core.request_headers(), timeout=self._timeout
        )
        try:
            response = self._client.send(request, stream=True, follow_redirects=True)
        except Exception as exc:
            if self._closed:
                raise StopIteration from None
            action = classify_error(exc)
            if action is None:
                raise
            if action is Action.FAIL:
                raise core.fail("cannot open the event stream", exc) from exc
            self._schedule(core.machine.on_disconnect(), exc)
            return
        with self._lock:
            if self._closed:
                response.close()
                raise StopIteration
            decision = core.on_response(
                response.status_code,
                response.headers.get("content-type"),
                response.headers.get("retry-after"),
                str(response.url),
            )
            if decision.action is Action.OPEN:
                self._response = response
                self._chunks = response.iter_bytes()
        if decision.action is Action.OPEN:
            # Outside the lock: the callback may call close().
            if self._on_open is not None:
                self._on_open()
            return
        error = decision.error
        if error is not None and error_body_wanted(response.headers):
            error = explain_failure(error, _read_error_body(response))
        response.close()
        if error is not None:
            raise error
        if decision.action is Action.RECONNECT:
            self._schedule(decision, _retry_status(response.status_code))

    def _read(self) -> None:
        core = self._core
        assert self._chunks is not None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._drop_response()
            if self._closed:
                raise StopIteration from None
            # The normal end of a 200 body also reestablishes the connection (§9.2.3).
            self._schedule(core.machine.on_disconnect(), None)
            return
        except Exception as exc:
            self._drop_response()
            if self._closed:
                raise StopIteration from None  # close() shut the socket down under us
            if classify_error(exc) is None:
                raise
            self._schedule(core.machine.on_disconnect(), exc)
            return
        try:
            core.feed(chunk)
        except EventTooLarge:
            core.machine.close()
            self._drop_response()
            raise

    def _schedule(self, decision: Decision, cause: BaseException | None) -> None:
        if decision.action is not Action.RECONNECT:
            return
        self._core.end_stream()
        self._reconnect_at = time.monotonic() + decision.delay
        if self._on_reconnect is not None:
            self._on_reconnect(decision.delay, cause)

    def _drop_response(self) -> None:
        self._core.end_stream()
        with self._lock:
            chunks, response = self._chunks, self._response
            self._chunks = self._response = None
        if chunks is not None:
            cast("Any", chunks).close()
        if response is not None:
            response.close()

    def _finish(self) -> None:
        self._drop_response()
        with self._lock:
            finished, self._finished = self._finished, True
        if not finished and self._owns_client:
            self._client.close()
            if self._backend is not None:
                self._backend.close()

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the source: ``CLOSED`` at once, no request or event afterwards; idempotent.

        Safe from any thread. If another thread is iterating, it is woken (a reconnect wait
        ends; with the source's own client a connect in progress is abandoned and every socket
        is shut down, so a wait for headers or a blocked read returns; with a given client only
        an open stream's socket is) and releases the connection itself.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._core.machine.close()
            self._wake.set()
            busy = self._busy
            response = self._response
        if self._backend is not None:
            self._backend.abort()
        if busy:
            if response is not None and self._backend is None:
                _shutdown(response)
        else:
            self._finish()

    def __enter__(self) -> EventSource[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EventSource {self._core.request_url!r} {self.ready_state.name}>"


def _shutdown(response: httpx.Response) -> None:
    # Closing a socket does not wake a thread blocked reading it; shutting it down does.
    stream = response.extensions.get("network_stream")
    if stream is None:
        return
    sock = stream.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _retry_status(status: int) -> ConnectionFailed:
    return ConnectionFailed(f"the server answered HTTP {status}", status_code=status)


def _read_error_body(response: httpx.Response) -> bytes:
    """Read a small error body (its length was checked); nothing if reading fails."""
    import httpx

    try:
        return response.read()
    except (httpx.HTTPError, httpx.StreamError):
        return b""
