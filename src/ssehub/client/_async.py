"""``AsyncEventSource``: a browser-exact EventSource for anyio (asyncio and trio), on httpx.

The iteration runs in the caller's task: no background task exists, so nothing outlives the
source. :meth:`AsyncEventSource.aclose` cancels whatever the iterating task is waiting on (a
reconnect delay, a connection attempt, a read) and returns once it has stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import anyio

from .._clock import Clock, SystemClock
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

__all__ = ["AsyncEventSource"]

T = TypeVar("T")


class AsyncEventSource(Generic[T]):
    """Iterate the events of a ``text/event-stream`` URL, reconnecting like a browser.

    Use it as an async context manager and an async iterator::

        async with AsyncEventSource("http://127.0.0.1:8000/events?topic=chat") as source:
            async for event in source:
                print(event.id, event.event, event.data)

    Connection model (WHATWG HTML §9.2): a network error, an idle timeout or the normal end of
    the stream reconnects after the reconnection time (the server's ``retry:``) plus backoff
    and jitter, sending ``Last-Event-ID``; a ``204`` ends the iteration; any other non-200
    status or a content type other than ``text/event-stream`` raises
    :class:`~ssehub.ConnectionFailed` (unless the status is one of ``policy.retry_statuses``).
    Redirects are followed. Events without data are never delivered, as in browsers.

    Args:
        url: an absolute ``http``/``https`` URL.
        headers: extra request headers (for example ``Authorization``).
        last_event_id: resume after this id (sent as ``Last-Event-ID`` on the first request).
        policy: reconnection delays and opted-in retry statuses.
        idle_timeout: seconds without any byte (heartbeats count) before the connection is
            presumed dead and reconnected; ``None`` waits forever. Default 45 s.
        connect_timeout: seconds to connect (and to send the request); ``None`` waits forever.
        max_event_size: bound in bytes for one line and one event; a bigger one raises
            :class:`~ssehub.EventTooLarge` and closes the source.
        client: an ``httpx.AsyncClient`` to use (not closed by the source); by default the
            source makes and owns one.
        decoder: turns each :class:`~ssehub.MessageEvent` into the delivered value (for example
            ``json.loads`` of its data, or one kind's ``EventKind.decode``). Its exceptions
            propagate from ``__anext__`` and the source stays usable.
        protocol: a typed protocol (:class:`ssehub.protocols.EventProtocol`): each request
            carries its negotiation headers, the handshake is read, batches are unbatched, and
            the source delivers :class:`ssehub.protocols.TypedEvent` values. A refusal
            (``protocol.error``, or a version this client does not speak) raises
            :class:`~ssehub.NegotiationError` and closes the source; an invalid payload raises
            :class:`~ssehub.SchemaValidationError` and the source stays usable. Not together
            with ``decoder``.
        clock: waits for reconnection delays (tests pass a manual clock).
        random: the jitter's random source, returning floats in ``[0, 1)``.
        on_reconnect: called with ``(delay, cause)`` each time a reconnection is scheduled;
            ``cause`` is the network error, the :class:`~ssehub.ConnectionFailed` of an
            opted-in retry status, or ``None`` after a normal end of stream.
        on_open: called each time a connection opens (the browser's ``open`` event).

    Both callbacks are plain functions run by the iterating task; an exception they raise
    propagates from ``__anext__`` (close the source then). The blocking twin's callbacks may
    also call ``close()``, which ends the iteration cleanly.

    Raises:
        ConfigurationError: the URL is invalid or not http(s), a setting is out of range, a
            header is reserved, or both ``decoder`` and ``protocol`` were given.
        MissingDependency: httpx (the ``client`` extra) is not installed.

    Cancelling a pending ``__anext__`` (for example with ``anyio.move_on_after``) drops the
    connection, because httpx cannot resume a cancelled read; the next call reconnects at once
    with ``Last-Event-ID``, so no event is lost.
    """

    @overload
    def __init__(
        self: AsyncEventSource[MessageEvent],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.AsyncClient | None = ...,
        decoder: None = ...,
        protocol: None = ...,
        clock: Clock | None = ...,
        random: Callable[[], float] | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncEventSource[T],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.AsyncClient | None = ...,
        decoder: Callable[[MessageEvent], T],
        protocol: None = ...,
        clock: Clock | None = ...,
        random: Callable[[], float] | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncEventSource[TypedEvent[Any]],
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        last_event_id: str = ...,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        connect_timeout: float | None = ...,
        max_event_size: int = ...,
        client: httpx.AsyncClient | None = ...,
        decoder: None = ...,
        protocol: EventProtocol,
        clock: Clock | None = ...,
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
        client: httpx.AsyncClient | None = None,
        decoder: Callable[[MessageEvent], Any] | None = None,
        protocol: EventProtocol | None = None,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        on_reconnect: ReconnectCallback | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        require_httpx()
        import httpx

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
        self._client = client if client is not None else httpx.AsyncClient()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._on_reconnect = on_reconnect
        self._on_open = on_open
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._reconnect_at: float | None = None
        self._closed = False
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None

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

    def __aiter__(self) -> AsyncEventSource[T]:
        return self

    async def __anext__(self) -> T:
        """Return the next event, connecting and reconnecting as needed.

        Raises:
            StopAsyncIteration: the source was closed (``aclose()`` or 204) or failed earlier.
            ConnectionFailed: the connection failed (status, content type, redirect error).
            EventTooLarge: an event exceeded ``max_event_size``; the source is closed.
            NegotiationError: the server refused the ``protocol``; the source is closed.
            Exception: whatever the decoder raises (``SchemaValidationError`` for a protocol).
            RuntimeError: another task is already waiting in ``__anext__``.
        """
        if self._scope is not None:
            raise RuntimeError("another task is already iterating this AsyncEventSource")
        stopped = self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                return await self._next()
            # Only aclose() cancels this scope.
            raise StopAsyncIteration
        finally:
            self._scope = None
            if self._closed:
                await self._drop_response()
            stopped.set()

    async def _next(self) -> T:
        core = self._core
        while True:
            if self._closed:
                raise StopAsyncIteration
            if core.ready:
                return deliver(core.ready.popleft())
            if core.pending:
                core.decode_next()
                continue
            if core.machine.closed:
                await self._drop_response()
                raise StopAsyncIteration
            if self._response is None:
                if self._reconnect_at is not None:
                    await self._clock.sleep_until(self._reconnect_at)
                    self._reconnect_at = None
                await self._connect()
            else:
                await self._read()

    async def _connect(self) -> None:
        core = self._core
        request = self._client.build_request(
            "GET", core.request_url, headers=core.request_headers(), timeout=self._timeout
        )
        try:
            response = await self._client.send(request, stream=True, follow_redirects=True)
        except Exception as exc:
            action = classify_error(exc)
            if action is None:
                raise
            if action is Action.FAIL:
                raise core.fail("cannot open the event stream", exc) from exc
            self._schedule(core.machine.on_disconnect(), exc)
            return
        decision = core.on_response(
            response.status_code,
            response.headers.get("content-type"),
            response.headers.get("retry-after"),
            str(response.url),
        )
        if decision.action is Action.OPEN:
            self._response = response
            self._chunks = response.aiter_bytes()
            if self._on_open is not None:
                self._on_open()
            return
        error = decision.error
        if error is not None and error_body_wanted(response.headers):
            error = explain_failure(error, await _read_error_body(response))
        with anyio.CancelScope(shield=True):
            await response.aclose()
        if error is not None:
            raise error
        if decision.action is Action.RECONNECT:
            self._schedule(decision, _retry_status(response.status_code))

    async def _read(self) -> None:
        core = self._core
        assert self._chunks is not None
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            # The normal end of a 200 body also reestablishes the connection (§9.2.3).
            await self._drop_response()
            self._schedule(core.machine.on_disconnect(), None)
            return
        except Exception as exc:
            action = classify_error(exc)
            await self._drop_response()
            if action is None:
                raise
            self._schedule(core.machine.on_disconnect(), exc)
            return
        except BaseException:
            # Cancelled mid-read: httpx cannot resume the body, so drop the connection.
            await self._drop_response()
            if not self._closed:
                self._schedule(core.machine.on_interrupted(), None, notify=False)
            raise
        try:
            core.feed(chunk)
        except EventTooLarge:
            core.machine.close()
            await self._drop_response()
            raise

    def _schedule(
        self, decision: Decision, cause: BaseException | None, *, notify: bool = True
    ) -> None:
        if decision.action is not Action.RECONNECT:
            return
        self._core.end_stream()
        self._reconnect_at = self._clock.time() + decision.delay
        if notify and self._on_reconnect is not None:
            self._on_reconnect(decision.delay, cause)

    async def _drop_response(self) -> None:
        self._core.end_stream()
        chunks, response = self._chunks, self._response
        self._chunks = self._response = None
        with anyio.CancelScope(shield=True):
            if response is not None:
                await response.aclose()
            if chunks is not None:
                await _finish_chunks(chunks)

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the source: ``CLOSED`` at once, no request or event afterwards; idempotent.

        Cancels a pending reconnect wait, connection attempt or read of the task iterating the
        source and returns once it has stopped; closes the httpx client if the source made it.
        """
        if not self._closed:
            self._closed = True
            self._core.machine.close()
            scope, stopped = self._scope, self._stopped
            if scope is not None and stopped is not None:
                scope.cancel()
                await stopped.wait()
            await self._drop_response()
            if self._owns_client:
                await self._client.aclose()

    async def __aenter__(self) -> AsyncEventSource[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncEventSource {self._core.request_url!r} {self.ready_state.name}>"


async def _finish_chunks(chunks: AsyncIterator[bytes]) -> None:
    """Run httpx's chain of body generators to its end after the response was closed.

    Closing only the outermost generator would leave the inner ones (httpx and httpcore nest
    several) suspended until garbage collection, which trio reports as a ResourceWarning. With
    the connection closed, the next read fails (or ends), which finishes every generator of the
    chain; at most the few chunks already buffered are read and discarded first.
    """
    import httpx

    try:
        for _ in range(1024):
            await chunks.__anext__()
    except (StopAsyncIteration, httpx.HTTPError, httpx.StreamError):
        return  # the chain has ended, which is all we wanted
    await cast("Any", chunks).aclose()


def _retry_status(status: int) -> ConnectionFailed:
    return ConnectionFailed(f"the server answered HTTP {status}", status_code=status)


async def _read_error_body(response: httpx.Response) -> bytes:
    """Read a small error body (its length was checked); nothing if reading fails."""
    import httpx

    try:
        return await response.aread()
    except (httpx.HTTPError, httpx.StreamError):
        return b""
