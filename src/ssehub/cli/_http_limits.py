"""The server seam of ``ssehub serve``: HTTP limits enforced in front of uvicorn's protocol.

What uvicorn's public ``Config`` offers is used as is: ``timeout_keep_alive`` (idle time between
requests) and ``h11_max_incomplete_event_size`` (h11's buffer). The rest it cannot do: httptools
enforces no size or count of header fields (one unterminated header grows the process without
bound), neither parser has a timeout for a head or a body that never arrives, and
``limit_concurrency`` counts every connection and task, open event streams included, and answers
503 to everyone once reached, ``/health`` too.

So :func:`http_protocol` hands uvicorn a protocol class (``Config(http=...)`` accepts one) whose
instances wrap an instance of uvicorn's own ``httptools`` or ``h11`` protocol. The wrapper is a
plain :class:`asyncio.Protocol`: it follows the HTTP/1.1 framing of each request (where its head
ends, and its body by ``Content-Length`` or chunked coding) without parsing it further, keeps the
limits below, and passes every byte and every transport callback on to uvicorn's protocol
unchanged. It reads no attribute of uvicorn's objects; it calls only the ``asyncio.Protocol``
methods of the one it wraps and public transport methods. At start-up :func:`http_protocol`
checks that uvicorn still maps ``--http`` names to protocol classes the way this module expects;
if not, it logs once and hands uvicorn the plain name (only the ``Config`` limits then apply).

The limits (each a setting of :class:`ssehub.hub.HubSettings`):

* a request head (request line and header fields) larger than ``max_header_size`` bytes, or with
  more than ``max_headers`` fields, gets ``431`` and the connection is closed; bytes past the
  limit are never passed on or kept;
* a head not complete ``header_timeout`` seconds after the connection opened (first request) or
  after its first byte (later requests) gets ``408`` and a close, or only a close when nothing
  was sent at all (an unused connection a browser opened in advance);
* a body that sends nothing for ``body_timeout`` seconds is cut (a close: the application may
  already be answering). Time during which the server itself stopped reading (a body the
  application has not consumed yet, a pipelined request) does not count;
* at most ``max_pending`` connections may be waiting for a complete request (head and body).
  Beyond that, the one waiting longest is closed, once it has waited :data:`EVICT_AFTER`
  seconds, as nginx reuses its idle connections when it runs out of them: sockets that connect
  and stay silent cannot use up the process's file descriptors and keep new clients, such as
  health checks, out. A connection serving an event stream is not waiting.

A response of the guard's own (431, 408) is written only before the connection's first request
reached uvicorn; later on a kept-alive connection an earlier response may still be in flight, so
the connection is just closed. After a response the guard shuts down its sending side and
discards what the client still sends for up to :data:`LINGER` seconds before closing, so that
the client can read the response instead of getting a reset.

Why not another server: hypercorn (``--read-timeout``) and granian (``--http1-header-read-timeout``,
``--http1-buffer-size``) have some of these, but neither caps the connections waiting for a
request (granian's ``--backpressure`` counts every request in progress, streams included), and
the hub's measured speed is uvicorn's with httptools.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - uvicorn's protocols are asyncio protocols; this is their seam
import importlib
import logging
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

if TYPE_CHECKING:
    from ..hub import HubSettings

__all__ = ["EVICT_AFTER", "LINGER", "HttpLimits", "guarded_protocol", "http_protocol"]

logger = logging.getLogger("ssehub.hub")

EVICT_AFTER: Final = 1.0
"""Seconds a waiting connection is safe from the ``max_pending`` cap.

A burst of clients reconnecting at once (after a deploy) may briefly exceed the cap: their
requests are already on the way. Sockets that stay silent are closed after this long.
"""

LINGER: Final = 2.0
"""Seconds the guard keeps discarding input after its own response, before it closes."""

# The end of a head: an empty line, after CRLF or a bare LF (h11 accepts bare LFs).
_END_CRLF: Final = b"\n\r\n"
_END_LF: Final = b"\n\n"
_BLANK_LINES: Final = re.compile(rb"[\r\n]*")  # empty lines before a request line (RFC 9112 §2.2)
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")  # a chunk size
_FRAMING: Final = re.compile(rb"\n(content-length|transfer-encoding)[ \t]*:([^\r\n]*)")  # lower

# What the guard is reading.
_HEAD, _BODY, _CHUNKED, _IDLE, _LINGERING, _CLOSED = range(6)
# Where it is inside a chunked body (RFC 9112 §7.1).
_SIZE_LINE, _DATA, _DATA_END, _TRAILER = range(4)


def _response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True)
class HttpLimits:
    """The limits a guarded connection keeps (see the module's description).

    Attributes:
        max_header_size: most bytes of a request head (request line and header fields).
        max_headers: most header fields of a request.
        header_timeout: seconds to send a whole head; ``None``: no limit.
        body_timeout: most seconds without a byte of a body; ``None``: no limit.
        max_pending: most connections waiting for a complete request.
    """

    max_header_size: int
    max_headers: int
    header_timeout: float | None
    body_timeout: float | None
    max_pending: int

    @classmethod
    def from_settings(cls, settings: HubSettings) -> HttpLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_header_size=settings.max_header_size,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_pending=settings.max_pending_connections,
        )


def http_protocol(uvicorn: ModuleType, name: str, limits: HttpLimits) -> type[Any] | str:
    """What to give uvicorn's ``Config(http=...)``: its ``name`` protocol behind the guard.

    Args:
        uvicorn: the ``uvicorn`` module.
        name: ``"httptools"`` or ``"h11"``.
        limits: the limits to keep.

    Returns:
        The guarded protocol class; or ``name`` itself, after one warning, when uvicorn does
        not map the name to an asyncio protocol class as expected (its ``Config`` limits still
        apply then).
    """
    target = getattr(getattr(uvicorn, "config", None), "HTTP_PROTOCOLS", {}).get(name)
    inner: object = None
    if isinstance(target, str) and ":" in target:
        module_name, _, class_name = target.partition(":")
        try:
            inner = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            inner = None
    if not (isinstance(inner, type) and issubclass(inner, asyncio.Protocol)):
        logger.warning(
            "HTTP limits: uvicorn does not name a protocol class for --http %s as expected; "
            "serving without the header size and count limits, the header and body timeouts "
            "and the cap on waiting connections",
            name,
        )
        return name
    return guarded_protocol(inner, limits)


def guarded_protocol(inner: type[asyncio.Protocol], limits: HttpLimits) -> type[asyncio.Protocol]:
    """A protocol class whose instances keep ``limits`` in front of an ``inner`` instance.

    Its constructor takes whatever ``inner``'s takes (uvicorn passes ``config``,
    ``server_state`` and ``app_state``). Each call makes a new class with its own count of
    waiting connections: one per server.

    Args:
        inner: the protocol class that handles HTTP (uvicorn's ``HttpToolsProtocol``...).
        limits: the limits to keep.
    """
    waiting = _Waiting(limits.max_pending)

    class Guarded(_Guard):
        __slots__ = ()
        _inner_class = inner
        _limits = limits
        _waiting = waiting
        _too_large = _response(
            431,
            "Request Header Fields Too Large",
            f"The request head is limited to {limits.max_header_size} bytes and "
            f"{limits.max_headers} header fields.\n",
        )
        _timed_out = _response(
            408,
            "Request Timeout",
            f"The request head did not arrive within {limits.header_timeout} s.\n",
        )

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{inner.__name__}"
    return Guarded


class _Waiting:
    """The connections waiting for a complete request, oldest first, and the cap on them."""

    __slots__ = ("cap", "guards", "timer")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.guards: dict[_Guard, float] = {}  # insertion order is arrival order
        self.timer: asyncio.TimerHandle | None = None

    def add(self, guard: _Guard, since: float, loop: asyncio.AbstractEventLoop) -> None:
        self.guards[guard] = since
        if len(self.guards) > self.cap:
            self.enforce(loop)

    def enforce(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        while len(self.guards) > self.cap:
            oldest, since = next(iter(self.guards.items()))
            if now < since + EVICT_AFTER:
                # Too young to be closed: look again when it no longer is. (Connections are
                # listed in the order they start waiting, so a timer set earlier is not late.)
                if self.timer is None:
                    self.timer = loop.call_at(since + EVICT_AFTER, self._on_timer, loop)
                return
            del self.guards[oldest]
            oldest.evict()

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        self.enforce(loop)


class _Guard(asyncio.Protocol):
    """Keeps the limits of one connection and passes everything on to the wrapped protocol."""

    __slots__ = (
        "_aux",
        "_chunk",
        "_deadline_timer",
        "_handed",
        "_head",
        "_head_size",
        "_inner",
        "_last_read",
        "_line",
        "_linger_until",
        "_listed",
        "_loop",
        "_remaining",
        "_since",
        "_state",
        "_timer_at",
        "_transport",
    )

    _inner_class: ClassVar[type[asyncio.Protocol]]
    _limits: ClassVar[HttpLimits]
    _waiting: ClassVar[_Waiting]
    _too_large: ClassVar[bytes]
    _timed_out: ClassVar[bytes]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._inner = self._inner_class(*args, **kwargs)
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        # A head that arrived in pieces (up to max_header_size), and a chunk-size or trailer
        # line: b"" until needed, so that an open stream does not keep two empty buffers.
        self._head: bytes | bytearray = b""
        self._head_size = 0  # bytes of the current head, empty lines before it included
        self._handed = 0  # request heads passed on
        self._remaining = 0  # bytes left of a Content-Length body or of a chunk
        self._chunk = _SIZE_LINE
        self._line: bytes | bytearray = b""
        self._aux = 0  # bytes of the trailer section
        self._since = 0.0  # when the current head started (or the connection opened); -1: now
        self._listed = False  # in the server's list of waiting connections
        self._last_read = 0.0
        self._linger_until = 0.0
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)
        self._loop = asyncio.get_running_loop()
        self._inner.connection_made(transport)
        self._state, self._since = _HEAD, -1.0
        self._still_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._unlist()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._state in (_LINGERING, _CLOSED):
            return None  # the transport closes
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self._state >= _LINGERING:
            return  # discarded: the guard has answered or closed
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state == _IDLE:  # the next request begins, timed from now
                self._state = state = _HEAD
                self._head_size, self._since = 0, -1.0
            if state == _HEAD:
                pos = self._read_head(data, pos)
            elif state == _BODY:
                taken = min(self._remaining, size - pos)
                pos += taken
                self._remaining -= taken
                if not self._remaining:
                    self._request_read()
            elif state == _CHUNKED:
                pos = self._read_chunked(data, pos)
            else:
                break
        state = self._state
        if state >= _LINGERING:
            return  # refused: nothing of this piece is passed on
        if state != _IDLE:
            self._still_waiting()
        # A request that arrived whole in one piece (the usual case) cost no clock reading,
        # no timer and no listing.
        self._inner.data_received(data)

    def _still_waiting(self) -> None:
        """The request is not complete after a read: list the connection, time it."""
        now = self._last_read = self._loop.time()
        if self._since < 0:
            self._since = now
        if not self._listed:
            self._listed = True
            self._waiting.add(self, self._since, self._loop)
        if self._state == _HEAD:
            if self._limits.header_timeout is not None:
                self._arm(self._since + self._limits.header_timeout)
        elif self._limits.body_timeout is not None:
            self._arm(now + self._limits.body_timeout)

    def _unlist(self) -> None:
        if self._listed:
            self._listed = False
            self._waiting.guards.pop(self, None)

    # -- the head ------------------------------------------------------------------------

    def _read_head(self, data: bytes, pos: int) -> int:
        """Take head bytes from ``data[pos:]``; return where the head ended, or ``len(data)``."""
        limit = self._limits.max_header_size
        size = len(data)
        head = self._head
        if not head:
            if data[pos] in b"\r\n":
                match = _BLANK_LINES.match(data, pos)
                assert match is not None  # the pattern matches the empty string
                self._head_size += match.end() - pos
                pos = match.end()
                if pos == size:
                    if self._head_size > limit:
                        self._refuse("request head too large", self._too_large)
                    return size
            stop = min(size, pos + max(limit - self._head_size, 0))
            end = _head_end(data, pos, stop)
            if end >= 0:  # the whole head is in this piece: read it where it is
                self._head_size += end - pos
                self._head_read(data, pos, end)
                return end
            self._head = bytearray(data[pos:stop])
            self._head_size += stop - pos
            if stop < size or self._head_size >= limit:
                self._refuse("request head too large", self._too_large)
            return size
        before = len(head)
        stop = min(size, pos + max(limit - self._head_size, 0))
        head += data[pos:stop]  # in place: a bytearray
        self._head = head
        end = _head_end(head, max(before - 2, 0), len(head))
        if end >= 0:
            taken = end - before
            self._head_size += taken
            self._head = b""
            self._head_read(head, 0, end)
            return pos + taken
        self._head_size += stop - pos
        if stop < size or self._head_size >= limit:
            self._refuse("request head too large", self._too_large)
        return size

    def _head_read(self, data: bytes | bytearray, start: int, end: int) -> None:
        """A complete head ``data[start:end]``: check its fields, then expect its body."""
        # Lines: the request line, one per field (folded continuations count too), the empty one.
        if data.count(b"\n", start, end) - 2 > self._limits.max_headers:
            self._refuse("too many header fields", self._too_large)
            return
        self._handed += 1
        head = data[start:end].lower()  # finds in C are much faster than a re.I search
        if b"\ncontent-length" not in head and b"\ntransfer-encoding" not in head:
            self._request_read()  # no body (a GET)
            return
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for match in _FRAMING.finditer(head):
            value = bytes(match[2]).strip(b" \t")
            (codings if match[1][:1] == b"t" else lengths).append(value)
        if codings:
            # RFC 9112 §6.3: chunked as the final coding frames the body; Transfer-Encoding
            # wins over Content-Length. Anything else is refused (400) by both of uvicorn's
            # parsers; the guard then expects no body.
            if b",".join(codings).split(b",")[-1].strip(b" \t").lower() == b"chunked":
                self._state, self._chunk = _CHUNKED, _SIZE_LINE
                self._line, self._aux = b"", 0
                return
        elif lengths:
            values = {part.strip(b" \t") for value in lengths for part in value.split(b",")}
            if len(values) == 1:
                (text,) = values
                if text.isdigit() and int(text) > 0:
                    self._state, self._remaining = _BODY, int(text)
                    return
        self._request_read()

    def _request_read(self) -> None:
        """The request is complete: the connection no longer waits."""
        self._state = _IDLE
        self._unlist()
        if self._deadline_timer is not None:
            # Freed now rather than when it would fire: an event stream keeps no timer.
            self._deadline_timer.cancel()
            self._deadline_timer = None

    # -- a chunked body ------------------------------------------------------------------

    def _read_chunked(self, data: bytes, pos: int) -> int:
        size = len(data)
        while pos < size and self._state == _CHUNKED:
            if self._chunk == _DATA:
                taken = min(self._remaining, size - pos)
                pos += taken
                self._remaining -= taken
                if not self._remaining:
                    self._chunk = _DATA_END
                continue
            newline = data.find(b"\n", pos)
            stop = size if newline < 0 else newline + 1
            if len(self._line) + stop - pos > self._limits.max_header_size:
                self._refuse("chunk line too long", None)
                return size
            if newline < 0:
                buffer = self._line or bytearray()  # a non-empty line is a bytearray
                buffer += data[pos:]  # in place: no quadratic copying of a line sent bytewise
                self._line = buffer
                return size
            line = bytes(self._line + data[pos:stop]) if self._line else data[pos:stop]
            self._line = b""
            pos = stop
            self._chunk_line(line.rstrip(b"\r\n"))
        return pos

    def _chunk_line(self, line: bytes) -> None:
        if self._chunk == _DATA_END:  # the CRLF after a chunk's data
            if line:
                self._refuse("malformed chunked body", None)
            self._chunk = _SIZE_LINE
        elif self._chunk == _SIZE_LINE:
            digits = line.split(b";", 1)[0].strip(b" \t")
            size = int(digits, 16) if _HEX.fullmatch(digits) else -1
            if size < 0:
                self._refuse("malformed chunked body", None)
            elif size:
                self._chunk, self._remaining = _DATA, size
            else:
                self._chunk = _TRAILER
        else:  # a trailer field, or the empty line that ends the body
            self._aux += len(line) + 2
            if self._aux > self._limits.max_header_size:
                self._refuse("trailer section too large", None)
            elif not line:
                self._request_read()

    # -- timers and refusals -------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        # One timer per connection, kept across requests: an earlier one fires and re-arms.
        if self._deadline_timer is not None:
            if self._timer_at <= deadline:
                return
            self._deadline_timer.cancel()
        self._timer_at = deadline
        self._deadline_timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._deadline_timer = None
        state = self._state
        now = self._loop.time()
        if state == _LINGERING:
            if now < self._linger_until:
                self._arm(self._linger_until)
            elif self._transport is not None:
                self._transport.close()
            return
        if state == _HEAD:
            timeout = self._limits.header_timeout
            deadline = self._since + (timeout or 0.0)
        elif state in (_BODY, _CHUNKED):
            timeout = self._limits.body_timeout
            deadline = self._last_read + (timeout or 0.0)
        else:
            return
        if timeout is None:
            return
        if now < deadline:
            self._arm(deadline)
            return
        assert self._transport is not None
        if not self._transport.is_reading():
            # uvicorn stopped reading (a body the application has not taken yet, a pipelined
            # request): the client could not send; start counting again.
            self._since = self._last_read = now
            self._arm(now + timeout)
            return
        if state == _HEAD:
            answer = self._timed_out if self._head_size else None
            self._refuse("request head timed out", answer)
        else:
            self._refuse("request body timed out", None)

    def evict(self) -> None:
        """Close the connection for the cap on waiting connections (already off the list)."""
        self._listed = False
        if self._state < _LINGERING:
            self._refuse("too many connections waiting for a request", None)
        elif self._transport is not None:
            self._transport.close()

    def _refuse(self, why: str, answer: bytes | None) -> None:
        transport = self._transport
        assert transport is not None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("HTTP limits: %s; closing %s", why, transport.get_extra_info("peername"))
        if answer is not None and not self._handed and not transport.is_closing():
            transport.write(answer)
            if transport.can_write_eof():
                transport.write_eof()
                self._state = _LINGERING
                self._linger_until = self._loop.time() + LINGER
                self._arm(self._linger_until)
                return
        self._state = _CLOSED
        transport.close()


def _head_end(data: bytes | bytearray, start: int, stop: int) -> int:
    """Where the empty line that ends a head ends in ``data[start:stop]``; -1 if not there."""
    crlf = data.find(_END_CRLF, start, stop)
    lf = data.find(_END_LF, start, stop)
    if crlf < 0:
        return -1 if lf < 0 else lf + 2
    if lf < 0 or crlf < lf:
        return crlf + 3
    return lf + 2
