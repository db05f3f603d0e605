"""What the sync and async EventSource share apart from I/O: URL rules, headers, the per-source
parsing state, and how httpx errors map onto the connection model.

:class:`SourceCore` is sans-IO: the drivers hand it responses and chunks and it hands back
decisions and events, keeping the :class:`~ssehub.client.ReconnectMachine` and the
:class:`~ssehub.wire.EventParser` in step.
"""

from __future__ import annotations

import collections
import json
import string
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from .._exceptions import (
    ConfigurationError,
    ConnectionFailed,
    MissingDependency,
    NegotiationError,
    SchemaValidationError,
)
from ..wire import EventParser, MessageEvent
from ._reconnect import Action, Decision, ReconnectMachine

if TYPE_CHECKING:
    import httpx

    from ..protocols import EventProtocol, ProtocolClient

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_ERROR_BODY",
    "Failed",
    "ReconnectCallback",
    "SourceCore",
    "classify_error",
    "deliver",
    "error_body_wanted",
    "explain_failure",
    "identity",
    "make_decoder",
    "require_httpx",
    "timeout_for",
    "validate_url",
]

DEFAULT_IDLE_TIMEOUT: Final = 45.0
"""Seconds without a single byte after which a stream is presumed dead and reconnected: three
missed heartbeats at the usual 15 s interval (WHATWG §9.2.7 suggests a comment every 15 s).
httpx's default 5 s read timeout would kill every quiet but healthy stream."""

DEFAULT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds to establish a TCP (and TLS) connection before counting the attempt as failed."""

ReconnectCallback = Callable[[float, "BaseException | None"], None]
"""Called before each wait (the browser's ``error`` event on reestablishing): ``(delay_seconds,
cause)``; ``cause`` is the network error or timeout, a :class:`~ssehub.ConnectionFailed` for an
opted-in retry status, or ``None`` after a normal end of stream."""

T = TypeVar("T")

MAX_ERROR_BODY: Final = 4096
"""Bytes of an error response read to explain a failed connection (only when the body declares
a ``Content-Length`` this small, so reading it can never wait on a slow or endless body)."""

_UNRESERVED_HOST: Final = frozenset(string.ascii_letters + string.digits + "-._~%:[]!$&'()*+,;=")


def require_httpx() -> None:
    """Make sure httpx (the ``client`` extra) is importable.

    Raises:
        MissingDependency: httpx is not installed; the message names ``ssehub[client]``.
    """
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("httpx", "client") from exc


def validate_url(url: str) -> str:
    """Check that ``url`` is an absolute ``http`` or ``https`` URL with a host.

    The browser's constructor throws ``SyntaxError`` for an unparsable URL and fails the
    connection for any other scheme (WPT ``eventsource-constructor-url-bogus``,
    ``eventsource-constructor-non-same-origin``); both are errors at construction here.

    Returns:
        The URL, unchanged.

    Raises:
        ConfigurationError: the URL is not a string, cannot be parsed, has another scheme, no
            host, whitespace or control characters, or an invalid port. It is a ``ValueError``.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"the URL must be a string, not {type(url).__name__}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConfigurationError(f"invalid URL {url!r}: whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        raise ConfigurationError(f"invalid URL {url!r}: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme!r} URLs" if parts.scheme else "a URL without a scheme"
        raise ConfigurationError(f"invalid URL {url!r}: only http and https work, not {shown}")
    if not parts.hostname or not set(parts.hostname) <= _UNRESERVED_HOST:
        raise ConfigurationError(f"invalid URL {url!r}: no valid host")
    del port
    return url


def timeout_for(connect: float | None, idle: float | None) -> httpx.Timeout:
    """Return the httpx timeout of a stream request.

    httpx's *read* timeout bounds the wait for each chunk, which is exactly an idle timeout:
    it fires only when no byte at all arrives for ``idle`` seconds (heartbeats reset it).
    """
    import httpx

    return httpx.Timeout(connect=connect, read=idle, write=connect, pool=connect)


def classify_error(exc: Exception) -> Action | None:
    """Map an exception from httpx onto the connection model.

    Returns:
        ``Action.FAIL`` for errors that retrying cannot fix (a redirect loop, a redirect to an
        unsupported scheme or an invalid URL), ``Action.RECONNECT`` for network errors and
        timeouts, ``None`` for exceptions that are not httpx's (they propagate unchanged).
    """
    import httpx

    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL)):
        return Action.FAIL
    if isinstance(exc, (httpx.TransportError, httpx.DecodingError)):
        return Action.RECONNECT
    return None


def error_body_wanted(headers: httpx.Headers) -> bool:
    """Whether a failed response's body is worth reading to explain the failure.

    Only small, complete bodies (a declared ``Content-Length`` up to :data:`MAX_ERROR_BODY`)
    of JSON or plain text: the hub's ``{"error", "detail"}`` answers, proxies' short messages.
    """
    length = headers.get("content-length", "")
    if not length.isdigit() or not 0 < int(length) <= MAX_ERROR_BODY:
        return False
    essence = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return essence in ("application/json", "text/plain") or essence.endswith("+json")


def explain_failure(error: ConnectionFailed, body: bytes) -> ConnectionFailed:
    """Return ``error`` with the body's explanation appended (the hub's JSON ``detail``).

    Args:
        error: the failure decided from the status and content type.
        body: the response body (at most :data:`MAX_ERROR_BODY` bytes), possibly empty.

    Returns:
        A new :class:`~ssehub.ConnectionFailed` with the same status, or ``error`` itself when
        the body says nothing usable.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        detail = document.get("detail") or document.get("error")
        text = str(detail) if detail else ""
    text = " ".join(text.split())[:300]
    if not text:
        return error
    return ConnectionFailed(f"{error}: {text}", status_code=error.status_code)


class SourceCore(Generic[T]):
    """Per-source state shared by both drivers: machine, parser, pending events, final URL.

    Received events wait in ``pending`` until the iterating caller asks for one; only then are
    they decoded (:meth:`decode_next`), so a decoder error surfaces for the event that caused
    it and the events after it are still delivered.

    Args:
        url: the validated request URL.
        headers: extra request headers.
        machine: the reconnect state machine.
        max_event_size: the parser's bound for one line and one event.
        decoder: turns each :class:`~ssehub.wire.MessageEvent` into the values delivered
            (usually one; none for a protocol's handshake; several for a protocol's batch).
        protocol: a protocol client whose negotiation headers every request carries.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        machine: ReconnectMachine,
        max_event_size: int,
        decoder: Callable[[MessageEvent], list[T]],
        *,
        protocol: ProtocolClient | None = None,
    ) -> None:
        self.request_url = url
        self.url = url
        self.machine = machine
        self.decoder = decoder
        self.pending: collections.deque[MessageEvent] = collections.deque()
        self.ready: collections.deque[T] = collections.deque()
        all_headers = dict(headers or {})
        if protocol is not None:
            _check_reserved(all_headers)
            all_headers.update(protocol.wants.headers())
        self._headers = _encode_headers(all_headers)
        self._max_event_size = max_event_size
        self._parser: EventParser | None = None

    def request_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers of the next request: the SSE ones, the user's, then Last-Event-ID."""
        headers = [
            (b"Accept", b"text/event-stream"),
            # Browsers fetch with cache mode "no-store", which sends this directive (WPT
            # request-cache-control); it also stops caching proxies from replaying a stream.
            (b"Cache-Control", b"no-cache"),
        ]
        headers.extend(self._headers)
        headers.extend(
            (name.encode("ascii"), value) for name, value in self.machine.request_headers().items()
        )
        return headers

    def on_response(
        self, status: int, content_type: str | None, retry_after: str | None, final_url: str
    ) -> Decision:
        """Observe a response; on ``OPEN`` start a new parser seeded with the last event ID.

        A new parser per connection means a BOM is stripped again at the start of each stream
        and no half-received event of the old connection leaks into the new one; seeding it
        with the committed id follows Chromium (``EventSource::DidReceiveResponse``).
        """
        decision = self.machine.on_response(status, content_type, retry_after=retry_after)
        if decision.action is Action.OPEN:
            self.url = final_url
            self._parser = EventParser(
                last_event_id=self.machine.last_event_id, max_event_size=self._max_event_size
            )
        return decision

    def feed(self, chunk: bytes) -> None:
        """Parse a chunk: queue its events and tell the machine the new id and retry.

        Raises:
            EventTooLarge: a line or event exceeds ``max_event_size``.
        """
        assert self._parser is not None
        self.pending.extend(self._parser.feed(chunk))
        self.machine.on_progress(self._parser.last_event_id, self._parser.retry)

    def decode_next(self) -> None:
        """Decode the oldest pending event into ``ready`` (zero or more values).

        Raises:
            NegotiationError: the server refused the protocol (``protocol.error``) or chose a
                version this client does not speak; the source is closed, since every
                reconnection would get the same answer.
            Exception: whatever the decoder raises; the event is consumed, the source stays
                usable.
        """
        message = self.pending.popleft()
        try:
            values = self.decoder(message)
        except NegotiationError:
            self.machine.close()
            self.pending.clear()
            raise
        self.ready.extend(values)

    def end_stream(self) -> None:
        """Drop the parser: the incomplete final event is discarded, as the spec requires."""
        if self._parser is not None:
            self._parser.close()
            self._parser = None

    def fail(self, message: str, exc: BaseException) -> ConnectionFailed:
        """Fail the connection because of ``exc``; return the error to raise (chained)."""
        self.end_stream()
        error = ConnectionFailed(f"{message}: {exc}")
        error.__cause__ = exc
        self.machine.fail(error)
        return error

    @property
    def origin(self) -> str:
        """The origin (``scheme://host[:port]``) of the final URL, as ``MessageEvent.origin``."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        port = "" if parts.port in (None, default) else f":{parts.port}"
        return f"{parts.scheme.lower()}://{host}{port}"


def _check_reserved(headers: Mapping[str, str]) -> None:
    for name in headers:
        if name.lower() in ("x-protocol", "x-protocol-version", "x-client-features"):
            raise ConfigurationError(f"the {name} header is set by the protocol")


def _encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    encoded = []
    for name, value in headers.items():
        if name.lower() in ("last-event-id", "accept", "cache-control"):
            # The connection model owns these (Last-Event-ID comes from the state machine).
            raise ConfigurationError(f"the {name} header is set by the EventSource itself")
        if any(ch in value for ch in "\r\n\0"):
            raise ConfigurationError(f"the {name} header contains CR, LF or NUL")
        try:
            encoded.append((name.encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError as exc:
            raise ConfigurationError(f"the {name} header is not latin-1 text") from exc
    return encoded


def identity(event: MessageEvent) -> MessageEvent:
    """The default decoder: deliver the :class:`~ssehub.wire.MessageEvent` itself."""
    return event


def make_decoder(
    decoder: Callable[[MessageEvent], Any] | None,
    protocol: EventProtocol | None,
    last_event_id: str,
) -> tuple[Callable[[MessageEvent], list[Any]], ProtocolClient | None]:
    """Return the per-event decoding function of a source, and its protocol client if any.

    Args:
        decoder: the user's one-to-one decoder, or ``None``.
        protocol: the typed protocol to negotiate and decode with, or ``None``.
        last_event_id: the id the source resumes after (the protocol client's running id, so
            batch items without an id inherit it).

    Returns:
        A function from one event to the values to deliver, and the
        :class:`~ssehub.protocols.ProtocolClient` when ``protocol`` was given.

    Raises:
        ConfigurationError: both ``decoder`` and ``protocol`` were given.
    """
    if protocol is None:
        one = decoder or identity
        return (lambda message: [one(message)]), None
    if decoder is not None:
        raise ConfigurationError("pass either decoder or protocol, not both")
    from ..protocols import ProtocolClient
    from ..protocols._batching import unbatch
    from ..protocols._schema import BATCH_EVENT

    client = ProtocolClient(protocol, last_event_id=last_event_id)

    def feed(message: MessageEvent) -> list[Any]:
        if message.event != BATCH_EVENT:
            return client.feed(message)
        # Item by item: the stream's Last-Event-ID is past the whole batch already, so an
        # invalid item raised for the batch would take the valid ones with it for good. Each
        # valid item is delivered; an invalid one raises in its turn (see Failed).
        values: list[Any] = []
        for item in unbatch(message, client.last_event_id):
            try:
                values.extend(client.feed(item))
            except SchemaValidationError as exc:  # noqa: PERF203 - one error per bad item
                client.last_event_id = item.id
                values.append(Failed(exc))
        return values

    return feed, client


class Failed:
    """An item of a batch that could not be decoded: raised when its turn comes.

    Attributes:
        error: the exception to raise.
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def deliver(value: T) -> T:
    """Return a ready value, or raise the error of a :class:`Failed` one."""
    if isinstance(value, Failed):
        raise value.error
    return value
