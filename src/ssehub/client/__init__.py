"""``ssehub.client``: EventSource clients that behave exactly like a browser's, and hub helpers.

Needs the ``client`` extra (``pip install 'ssehub[client]'``, which installs httpx). Importing
this package works without it; constructing a client raises :class:`~ssehub.MissingDependency`.

- :class:`AsyncEventSource` (anyio: asyncio and trio) and :class:`EventSource` (blocking):
  iterate a ``text/event-stream`` URL with the WHATWG connection model, exact ``Last-Event-ID``
  resume, backoff with jitter and idle detection.
- :class:`ReconnectMachine` and :class:`ReconnectPolicy`: the pure state machine both drive.
- :class:`HubClient` and :class:`AsyncHubClient`: publish, subscribe and query an ssehub hub;
  publishes carry an idempotency key and retry safely (:class:`PublishRetry`).
"""

from __future__ import annotations

from ._async import AsyncEventSource
from ._common import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from ._hub import (
    DEFAULT_HUB_URL,
    AsyncHubClient,
    HubClient,
    Publication,
    PublishResult,
    PublishRetry,
)
from ._reconnect import (
    RETRYABLE_STATUSES,
    Action,
    Decision,
    ReadyState,
    ReconnectMachine,
    ReconnectPolicy,
    is_event_stream,
)
from ._sync import EventSource

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HUB_URL",
    "DEFAULT_IDLE_TIMEOUT",
    "RETRYABLE_STATUSES",
    "Action",
    "AsyncEventSource",
    "AsyncHubClient",
    "Decision",
    "EventSource",
    "HubClient",
    "Publication",
    "PublishResult",
    "PublishRetry",
    "ReadyState",
    "ReconnectMachine",
    "ReconnectPolicy",
    "is_event_stream",
]
