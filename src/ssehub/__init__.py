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
    AuthenticationError,
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
    IdempotencyKeyReused,
    IngestError,
    InvalidIdempotencyKey,
    InvalidLastEventId,
    InvalidTopic,
    LimitReached,
    ListenerBusy,
    MessageRejected,
    MissingDependency,
    NegotiationError,
    NoMessages,
    ParseError,
    ProtocolError,
    PublishOutcomeUnknown,
    SchemaValidationError,
    SendTimeoutError,
    SlowConsumer,
    SSEHubError,
    UnknownChannel,
    UnknownListener,
)
from .wire import EventParser, JSONServerSentEvent, MessageEvent, ServerSentEvent

if TYPE_CHECKING:
    from .broker import (
        Broker,
        BrokerStatistics,
        Dropped,
        OverflowPolicy,
        Publication,
        Reset,
        ResetReason,
        StoredEvent,
        Subscription,
        SubscriptionStatistics,
        TopicMatcher,
        TopicPattern,
    )
    from .channels import (
        CallbackListener,
        Channel,
        ChannelRegistry,
        IngestClient,
        Listener,
        Message,
        WorkerPool,
    )
    from .protocols import EventProtocol
    from .response import EventSourceResponse, shutdown_streams

# Public names defined in modules that import third-party packages: loaded on first access.
_LAZY: dict[str, str] = {
    "EventSourceResponse": ".response",
    "shutdown_streams": ".response",
    "Broker": ".broker",
    "BrokerStatistics": ".broker",
    "OverflowPolicy": ".broker",
    "Publication": ".broker",
    "Reset": ".broker",
    "ResetReason": ".broker",
    "StoredEvent": ".broker",
    "Subscription": ".broker",
    "SubscriptionStatistics": ".broker",
    "Dropped": ".broker",
    "TopicMatcher": ".broker",
    "TopicPattern": ".broker",
    "Channel": ".channels",
    "IngestClient": ".channels",
    "ChannelRegistry": ".channels",
    "Listener": ".channels",
    "Message": ".channels",
    "CallbackListener": ".channels",
    "WorkerPool": ".channels",
    "EventProtocol": ".protocols",
}

__all__ = [
    "AuthenticationError",
    "BackendUnavailable",
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerStatistics",
    "CallbackListener",
    "Channel",
    "ChannelError",
    "ChannelRegistry",
    "ClientError",
    "ConfigurationError",
    "ConnectionFailed",
    "Dropped",
    "EventParser",
    "EventProtocol",
    "EventSourceResponse",
    "EventTooLarge",
    "EventValidationError",
    "HubResponseError",
    "IdempotencyKeyReused",
    "IngestClient",
    "IngestError",
    "InvalidIdempotencyKey",
    "InvalidLastEventId",
    "InvalidTopic",
    "JSONServerSentEvent",
    "LimitReached",
    "Listener",
    "ListenerBusy",
    "Message",
    "MessageEvent",
    "MessageRejected",
    "MissingDependency",
    "NegotiationError",
    "NoMessages",
    "OverflowPolicy",
    "ParseError",
    "ProtocolError",
    "Publication",
    "PublishOutcomeUnknown",
    "Reset",
    "ResetReason",
    "SSEHubError",
    "SchemaValidationError",
    "SendTimeoutError",
    "ServerSentEvent",
    "SlowConsumer",
    "StoredEvent",
    "Subscription",
    "SubscriptionStatistics",
    "TopicMatcher",
    "TopicPattern",
    "UnknownChannel",
    "UnknownListener",
    "WorkerPool",
    "__version__",
    "shutdown_streams",
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
