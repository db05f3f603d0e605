"""ssehub: Server-Sent Events for Python.

The public API is flat: import everything from ``ssehub``. The wire core and the exceptions are
imported eagerly (they need only the standard library); everything that needs Starlette or anyio is
imported on first use, so ``import ssehub.wire`` works in a bare interpreter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from ._exceptions import (
    BackendUnavailable,
    BrokerClosed,
    BrokerError,
    ChannelError,
    ClientError,
    ConfigurationError,
    ConnectionFailed,
    EventTooLarge,
    EventValidationError,
    HubResponseError,
    InvalidLastEventId,
    InvalidTopic,
    MessageRejected,
    MissingDependency,
    NegotiationError,
    NoMessages,
    ParseError,
    ProtocolError,
    SchemaValidationError,
    SendTimeoutError,
    SlowConsumer,
    SSEHubError,
    UnknownChannel,
    UnknownListener,
)
from .wire import EventParser, JSONServerSentEvent, MessageEvent, ServerSentEvent

if TYPE_CHECKING:
    from .response import EventSourceResponse

# Public names defined in modules that import third-party packages: loaded on first access.
_LAZY: dict[str, str] = {
    "EventSourceResponse": ".response",
}

__all__ = [
    "BackendUnavailable",
    "BrokerClosed",
    "BrokerError",
    "ChannelError",
    "ClientError",
    "ConfigurationError",
    "ConnectionFailed",
    "EventParser",
    "EventSourceResponse",
    "EventTooLarge",
    "EventValidationError",
    "HubResponseError",
    "InvalidLastEventId",
    "InvalidTopic",
    "JSONServerSentEvent",
    "MessageEvent",
    "MessageRejected",
    "MissingDependency",
    "NegotiationError",
    "NoMessages",
    "ParseError",
    "ProtocolError",
    "SSEHubError",
    "SchemaValidationError",
    "SendTimeoutError",
    "ServerSentEvent",
    "SlowConsumer",
    "UnknownChannel",
    "UnknownListener",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ssehub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
