"""The SSE wire format: encoding and incremental parsing, standard library only.

Nothing in this package imports a third-party module (``orjson`` is used when present, never
required); ``tests/test_exports.py`` enforces it.
"""

from __future__ import annotations

from .decode import DEFAULT_MAX_EVENT_SIZE, MAX_RETRY, EventParser, MessageEvent, parse
from .event import DEFAULT_SEPARATOR, SEPARATORS, JSONServerSentEvent, ServerSentEvent

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_SEPARATOR",
    "MAX_RETRY",
    "SEPARATORS",
    "EventParser",
    "JSONServerSentEvent",
    "MessageEvent",
    "ServerSentEvent",
    "parse",
]
