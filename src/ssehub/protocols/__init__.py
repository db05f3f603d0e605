"""Typed event protocols on top of SSE: schemas, negotiation, batching, ready-made streams.

The guide is ``docs/protocols.md``. In short::

    from ssehub.protocols import EventProtocol, Negotiator, BatchPolicy, batched

    chat = EventProtocol("chat", versions=["1", "2"], features=["batching"])
    said = chat.kind("chat.said", Said, batchable=True)      # a dataclass, TypedDict, ...

    session = Negotiator([chat]).negotiate_request(request.headers, request.query_params)
    yield session.handshake_event()
    yield session.encode(said, Said(...), id=41)

The layer is pure: nothing here depends on the broker or the hub, and the only module touching
HTTP is the optional Starlette helper (``negotiate_request``, ``negotiation_error_response``).
"""

from __future__ import annotations

from ._batching import BatchPolicy, CancelSafeReceiver, batch_event, batched, unbatch
from ._client import ProtocolClient
from ._health import (
    HEALTH_ALERT,
    HEALTH_PROTOCOL,
    HEALTH_REPORT,
    ComponentHealth,
    HealthAlert,
    HealthCheck,
    HealthMonitor,
    HealthReport,
    HealthStatus,
    HealthSubscription,
    Thresholds,
)
from ._negotiation import (
    FEATURES_HEADER,
    FEATURES_QUERY,
    PROTOCOL_HEADER,
    PROTOCOL_QUERY,
    VERSION_HEADER,
    VERSION_QUERY,
    ClientWants,
    Handshake,
    Negotiated,
    Negotiator,
)
from ._progress import (
    TASK_PROGRESS,
    TASK_PROTOCOL,
    ProgressBoard,
    ProgressOverrun,
    ProgressReporter,
    ProgressSubscription,
    TaskProgress,
    TaskState,
)
from ._responses import (
    DEFAULT_ERROR_RETRY,
    ErrorMode,
    negotiate_request,
    negotiation_error_body,
    negotiation_error_response,
    protocol_error_event,
)
from ._schema import (
    BATCH_EVENT,
    ERROR_EVENT,
    HANDSHAKE_EVENT,
    RESERVED_PREFIX,
    EventKind,
    EventProtocol,
    TypedEvent,
)

__all__ = [
    "BATCH_EVENT",
    "DEFAULT_ERROR_RETRY",
    "ERROR_EVENT",
    "FEATURES_HEADER",
    "FEATURES_QUERY",
    "HANDSHAKE_EVENT",
    "HEALTH_ALERT",
    "HEALTH_PROTOCOL",
    "HEALTH_REPORT",
    "PROTOCOL_HEADER",
    "PROTOCOL_QUERY",
    "RESERVED_PREFIX",
    "TASK_PROGRESS",
    "TASK_PROTOCOL",
    "VERSION_HEADER",
    "VERSION_QUERY",
    "BatchPolicy",
    "CancelSafeReceiver",
    "ClientWants",
    "ComponentHealth",
    "ErrorMode",
    "EventKind",
    "EventProtocol",
    "Handshake",
    "HealthAlert",
    "HealthCheck",
    "HealthMonitor",
    "HealthReport",
    "HealthStatus",
    "HealthSubscription",
    "Negotiated",
    "Negotiator",
    "ProgressBoard",
    "ProgressOverrun",
    "ProgressReporter",
    "ProgressSubscription",
    "ProtocolClient",
    "TaskProgress",
    "TaskState",
    "Thresholds",
    "TypedEvent",
    "batch_event",
    "batched",
    "negotiate_request",
    "negotiation_error_body",
    "negotiation_error_response",
    "protocol_error_event",
    "unbatch",
]
