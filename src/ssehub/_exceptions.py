"""Every exception ssehub raises, in one tree.

This module imports only the standard library, so ``ssehub.wire`` can use it and still run
without any third-party package installed.

::

    SSEHubError
    ├── EventValidationError (ValueError)      an event field would break the wire format
    ├── ParseError (ValueError)                the incoming stream cannot be parsed
    │   └── EventTooLarge                      a line or event exceeds the parser's bound
    ├── SendTimeoutError (TimeoutError)        a client did not accept bytes within send_timeout
    ├── MissingDependency (ImportError)        an optional extra is not installed
    ├── ConfigurationError (ValueError)        invalid settings
    ├── AuthenticationError                    a credential is missing, invalid or expired
    ├── BrokerError
    │   ├── BrokerClosed                       the broker is not running (or shut down)
    │   ├── InvalidTopic (ValueError)          a topic name is empty, too long or has bad characters
    │   ├── InvalidLastEventId (ValueError)    a Last-Event-ID that is malformed or too long
    │   ├── SlowConsumer                       a subscription was shed by the ``disconnect`` policy
    │   ├── InvalidIdempotencyKey (ValueError) a key that is empty, too long or not visible ASCII
    │   ├── IdempotencyKeyReused (ValueError)  a key already used for a different publication
    │   └── BackendUnavailable                 the storage backend (e.g. Redis) cannot be reached
    │       └── PublishOutcomeUnknown          a publish was sent but not answered: maybe stored
    ├── ChannelError
    │   ├── UnknownChannel (LookupError)
    │   ├── UnknownListener (LookupError)
    │   ├── AlreadyExists                      a channel or listener with this name exists
    │   ├── NoMessages                         deliver_next() found the listener's queue empty
    │   ├── LimitReached                       a registry or a channel is full
    │   ├── ListenerBusy                       a message stream is already consuming the listener
    │   └── MessageRejected (ValueError)       a listener's on_message hook refused a message
    ├── ProtocolError
    │   ├── SchemaValidationError (ValueError) a payload does not match its declared type
    │   └── NegotiationError                   no protocol version both sides support
    └── ClientError
        ├── ConnectionFailed                   the EventSource was failed (status, content type)
        ├── HubResponseError                   the hub answered an API call with an error
        └── IngestError                        the hub's ingest socket refused a command

Errors carry structured attributes (for example ``EventTooLarge.limit``) so callers need not parse
messages. Errors raised by third-party libraries (httpx, redis) are re-raised as these types at the
boundary, with the original chained as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExists",
    "AuthenticationError",
    "BackendUnavailable",
    "BrokerClosed",
    "BrokerError",
    "ChannelError",
    "ClientError",
    "ConfigurationError",
    "ConnectionFailed",
    "EventTooLarge",
    "EventValidationError",
    "HubResponseError",
    "IdempotencyKeyReused",
    "IngestError",
    "InvalidIdempotencyKey",
    "InvalidLastEventId",
    "InvalidTopic",
    "LimitReached",
    "ListenerBusy",
    "MessageRejected",
    "MissingDependency",
    "NegotiationError",
    "NoMessages",
    "ParseError",
    "ProtocolError",
    "PublishOutcomeUnknown",
    "SSEHubError",
    "SchemaValidationError",
    "SendTimeoutError",
    "SlowConsumer",
    "UnknownChannel",
    "UnknownListener",
]


class SSEHubError(Exception):
    """Root of every exception raised by ssehub."""


class EventValidationError(SSEHubError, ValueError):
    """An event field would break the wire format (for example CR or LF in ``event`` or ``id``).

    Attributes:
        field: the name of the offending field (``"event"``, ``"id"``, ``"retry"``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid SSE field {field!r}: {message}")
        self.field = field


class ParseError(SSEHubError, ValueError):
    """The incoming event stream cannot be parsed."""


class EventTooLarge(ParseError):
    """A line or an event exceeds the parser's size bound.

    Attributes:
        limit: the bound in bytes that was exceeded.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"SSE line or event exceeds the limit of {limit} bytes")
        self.limit = limit


class SendTimeoutError(SSEHubError, TimeoutError):
    """A client did not accept a chunk within ``send_timeout`` seconds (a frozen client)."""


class MissingDependency(SSEHubError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it.

    Attributes:
        extra: the extra to install, as in ``pip install 'ssehub[extra]'``.
    """

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'ssehub[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ConfigurationError(SSEHubError, ValueError):
    """Settings that cannot work together or are out of range."""


class AuthenticationError(SSEHubError):
    """A credential (JWT or API key) is missing, malformed, badly signed, expired or not yet valid.

    Attributes:
        reason: a short explanation that never repeats the credential itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerError(SSEHubError):
    """Base class of broker errors."""


class BrokerClosed(BrokerError):
    """The broker is not running: it was never entered, or it has shut down."""


class InvalidTopic(BrokerError, ValueError):
    """A topic name is empty, too long, or contains characters outside the allowed set."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"invalid topic: {reason}")
        self.topic = topic
        self.reason = reason


class InvalidLastEventId(BrokerError, ValueError):
    """A ``Last-Event-ID`` is malformed or too long. The value is never echoed in the message."""


class SlowConsumer(BrokerError):
    """A subscription fell behind its bounded queue and was shed by the ``disconnect`` policy."""


class InvalidIdempotencyKey(BrokerError, ValueError):
    """An idempotency key is empty, too long, or has characters outside visible ASCII.

    Attributes:
        reason: what is wrong with it (the key itself is not repeated).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid idempotency key: {reason}")
        self.reason = reason


class IdempotencyKeyReused(BrokerError, ValueError):
    """An idempotency key came back with a different publication (topics, data, type, retry or
    privacy differ) while the first one is remembered: nothing was published.

    Answering the first result would silently drop this publication, so it is refused instead;
    a key names one publication, and its retries must repeat it exactly.
    """


class BackendUnavailable(BrokerError):
    """The broker's storage backend (for example Redis) cannot be reached.

    Raised by a publish, it means that nothing was stored (the backend refused, or the command
    never left this process), unless it is the subclass :class:`PublishOutcomeUnknown`.
    """


class PublishOutcomeUnknown(BackendUnavailable):
    """A publish reached the backend but its answer did not come back (a timeout or a lost
    connection after the command was sent): the events may or may not be stored, and may still
    be delivered when the backend resumes.

    Retry with the same idempotency key: if the first attempt was stored, the retry answers its
    result and stores nothing new. A subclass of :class:`BackendUnavailable`, so code that
    handles the backend being away handles this too.
    """


class ChannelError(SSEHubError):
    """Base class of channel and listener errors."""


class UnknownChannel(ChannelError, LookupError):
    """No channel with this name exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown channel: {name!r}")
        self.name = name


class UnknownListener(ChannelError, LookupError):
    """No listener with this id exists in the channel."""

    def __init__(self, listener_id: str) -> None:
        super().__init__(f"unknown listener: {listener_id!r}")
        self.listener_id = listener_id


class AlreadyExists(ChannelError):
    """A channel (in a registry) or a listener (in a channel) with this name already exists.

    Attributes:
        kind: ``"channel"`` or ``"listener"``.
        name: the name or id that is taken.
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} already exists")
        self.kind = kind
        self.name = name


class NoMessages(ChannelError):
    """``deliver_next()`` found no message waiting for the listener."""


class LimitReached(ChannelError):
    """A registry has its maximum of channels, or a channel its maximum of listeners.

    Attributes:
        limit: the maximum that was reached.
    """

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class ListenerBusy(ChannelError):
    """A message stream is already consuming this listener (one consumer at a time).

    Attributes:
        listener_id: the listener's id.
    """

    def __init__(self, listener_id: str) -> None:
        super().__init__(f"listener {listener_id!r} already has a consumer")
        self.listener_id = listener_id


class MessageRejected(ChannelError, ValueError):
    """A listener's ``on_message`` hook refused a message; nothing was delivered."""


class ProtocolError(SSEHubError):
    """Base class of typed-protocol errors."""


class SchemaValidationError(ProtocolError, ValueError):
    """A payload does not match the type declared for its event kind.

    Attributes:
        kind: the event kind whose payload failed validation.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"invalid payload for {kind!r}: {message}")
        self.kind = kind


class NegotiationError(ProtocolError):
    """No protocol or version both sides support.

    Attributes:
        available: what the server offers, as a JSON-ready mapping.
    """

    def __init__(self, message: str, available: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.available = available or {}


class ClientError(SSEHubError):
    """Base class of client errors."""


class ConnectionFailed(ClientError):
    """The connection was *failed* in the WHATWG sense (bad status or content type); no retry.

    Attributes:
        status_code: the HTTP status, when a response was received.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class HubResponseError(ClientError):
    """The hub answered an API call with an error.

    Attributes:
        status_code: the HTTP status.
        error: the JSON error body the hub sent.
    """

    def __init__(self, status_code: int, error: dict[str, Any]) -> None:
        super().__init__(f"hub answered {status_code}: {error.get('detail') or error}")
        self.status_code = status_code
        self.error = error


class IngestError(ClientError):
    """The hub's ingest socket answered a command with an error, or the connection failed.

    Attributes:
        code: the hub's error code (``unknown_channel``, ``invalid_json``, ...), or
            ``connection`` when the socket could not be reached or broke.
        detail: the human-readable explanation.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{detail} ({code})")
        self.code = code
        self.detail = detail
