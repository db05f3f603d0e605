"""Direct writes for event streams served by uvicorn's httptools protocol.

``ssehub serve`` runs uvicorn with :class:`HttpToolsProtocol`, uvicorn's own httptools protocol
plus one ASGI extension, ``scope["extensions"]["ssehub.direct_write"]``. Through it a broker
subscription's stream lets the publisher hand each event to the connection inside the
publishing call, while the subscriber has nothing queued: no task wake-up and no ASGI ``send``
chain per delivery. Frames accepted during one event-loop iteration leave together, one
``transport.write`` per connection at the start of the next, and the HTTP chunk of a lone
frame is built once for all connections. In fan-out to 1 000 subscribers this took the
server's CPU per delivery from about 40 to 5 µs (``benchmarks/RESULTS.md``). The protocol also
tells the response when the connection is lost, so such a stream needs no task waiting in
``receive()``.

Nothing else changes: a connection whose buffer is full (uvicorn has paused writing) or that
is closed refuses the frame, the broker queues it, and the stream's task sends it with the
usual ASGI ``send``, send timeout and slow-consumer policy. A response whose ``send`` is
wrapped by a middleware never writes directly, since the middleware must see every message;
Starlette wraps ``send`` in its error middleware, so in a Starlette app only the hub's own app
(which puts its body lane in front of that middleware) or a bare ASGI route gets direct writes.

Your own app can use it too::

    uvicorn myapp:app --http ssehub.uvicorn:HttpToolsProtocol

Every other request is served exactly as by ``--http httptools``.

This module builds on uvicorn's ``RequestResponseCycle`` internals (``transport``, ``flow``,
``disconnected``, ``response_started``, ``response_complete``, ``chunked_encoding``, ``send``);
the test suite checks them against the installed uvicorn, and a missing attribute turns direct
writes off rather than failing a request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._exceptions import MissingDependency
from ._frames import DIRECT_WRITE

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol
except ImportError as exc:  # pragma: no cover - the hub extra provides uvicorn and httptools
    raise MissingDependency("uvicorn and httptools", "hub") from exc

if TYPE_CHECKING:
    from starlette.types import Send
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["HttpToolsProtocol"]

# The HTTP/1.1 chunk of the last frame written: one event goes to every subscriber in a row,
# so one entry serves a whole fan-out. A tuple, replaced whole: reading it is thread-safe.
_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _chunk(frame: bytes) -> bytes:
    global _last_chunk  # noqa: PLW0603 - a one-entry cache shared by every connection
    last = _last_chunk
    if last[0] is frame:
        return last[1]
    chunk = b"%x\r\n%s\r\n" % (len(frame), frame)
    _last_chunk = (frame, chunk)
    return chunk


class _Flusher:
    """Writes every connection's pending frames once per event-loop iteration.

    Frames accepted by writers during one iteration (a burst of publishes handled together)
    leave in one ``transport.write`` per connection, as one chunk, at the start of the next:
    one system call per subscriber instead of one per event. A single event costs one
    ``call_soon`` more than writing at once.
    """

    __slots__ = ("_call_soon", "_dirty")

    def __init__(self, call_soon: Callable[[Callable[[], object]], object]) -> None:
        self._call_soon = call_soon
        self._dirty: list[_Writer] = []

    def add(self, writer: _Writer) -> None:
        if not self._dirty:
            self._call_soon(self._flush)
        self._dirty.append(writer)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer._flush()


class _Writer:
    """Writes frames as HTTP/1.1 chunks to one response's transport (a ``FrameWriter``)."""

    __slots__ = ("_cycle", "_flow", "_flusher", "_pending", "_time", "_transport", "last_write")

    def __init__(
        self, cycle: RequestResponseCycle, time: Callable[[], float], flusher: _Flusher
    ) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport = cycle.transport
        self._flusher = flusher
        self._pending: list[bytes] | None = None
        # The connection's event loop time(): what anyio.current_time() returns on asyncio,
        # without an async-library look-up per write.
        self._time = time
        self.last_write = time()

    def __call__(self, frame: bytes) -> bool:
        cycle = self._cycle
        if (
            cycle.disconnected
            or cycle.response_complete
            or self._flow.write_paused
            or self._transport.is_closing()
        ):
            return False
        pending = self._pending
        if pending is None:
            self._pending = [frame]
            self._flusher.add(self)
        else:
            pending.append(frame)
        self.last_write = self._time()
        return True

    def _flush(self) -> None:
        frames = self._pending
        self._pending = None
        cycle = self._cycle
        # Frames still pending when the response ended (the stream was cut in this very
        # iteration) are dropped: the client never saw them and resumes before them.
        if not frames or cycle.disconnected or cycle.response_complete:
            return
        transport = self._transport
        if transport.is_closing():
            return
        if len(frames) == 1:
            data = _chunk(frames[0])
        else:
            body = b"".join(frames)
            data = b"%x\r\n%s\r\n" % (len(body), body)
        try:
            # Written even when writing was paused meanwhile: these frames were accepted
            # before, and frames refused since then are queued behind them.
            transport.write(data)
        except Exception:  # noqa: BLE001 - a transport failing under us; uvicorn sees it closed
            return


class _DirectWrite:
    """The ``ssehub.direct_write`` extension of one request (a ``DirectWrite``)."""

    __slots__ = ("_cycle", "_flusher", "_lost", "_time")

    def __init__(
        self, cycle: RequestResponseCycle, time: Callable[[], float], flusher: _Flusher
    ) -> None:
        self._cycle = cycle
        self._time = time
        self._flusher = flusher
        self._lost: Callable[[], object] | None = None

    def on_disconnect(self, callback: Callable[[], object] | None) -> None:
        self._lost = callback
        if callback is not None and getattr(self._cycle, "disconnected", False):
            self._connection_lost()

    def _connection_lost(self) -> None:
        callback, self._lost = self._lost, None
        if callback is not None:
            callback()

    def writer_for(self, send: Send) -> _Writer | None:
        cycle = self._cycle
        try:
            if (
                send != cycle.send
                or cycle.chunked_encoding is not True
                or not cycle.response_started
                or cycle.response_complete
                or cycle.disconnected
            ):
                return None
            return _Writer(cycle, self._time, self._flusher)
        except AttributeError:  # a uvicorn whose cycle differs: no direct writes
            return None


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol, offering the ``ssehub.direct_write`` ASGI extension.

    Pass it to uvicorn as the HTTP implementation (``--http ssehub.uvicorn:HttpToolsProtocol``
    or ``uvicorn.Config(http=HttpToolsProtocol)``); ``ssehub serve`` does.
    """

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # Upgrades (websockets) return before a new cycle exists; only the new request's own
        # cycle gets the extension. Its task has been created but has not run yet, so the
        # scope may still be completed here.
        if cycle is not None and cycle.scope is self.scope:
            extensions = self.scope.setdefault("extensions", {})
            extensions[DIRECT_WRITE] = _DirectWrite(  # type: ignore[assignment]
                cycle, self.loop.time, self._flusher()
            )

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The latest request's extension (its scope is the protocol's): on a keep-alive
        # connection only that request can be streaming. Found through the scope rather than
        # kept in an attribute of ours: one attribute more than uvicorn's own would cost
        # every connection a larger instance dict.
        scope: Any = self.scope
        if scope is not None:
            direct = scope.get("extensions", {}).get(DIRECT_WRITE)
            if isinstance(direct, _DirectWrite):
                direct._connection_lost()

    def _flusher(self) -> _Flusher:
        # One per server (so per event loop), kept on uvicorn's shared server state.
        state = self.server_state
        flusher: _Flusher | None = getattr(state, "_ssehub_flusher", None)
        if flusher is None:
            flusher = _Flusher(self.loop.call_soon)
            state._ssehub_flusher = flusher  # type: ignore[attr-defined]
        return flusher
