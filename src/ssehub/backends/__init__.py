"""Storage backends for the broker, chosen by URL scheme (``memory://``, ``redis://``)."""

from __future__ import annotations

from .base import Backend, EventSink, PendingEvent, Replay, replay_matching
from .factory import BACKEND_SCHEMES, create_backend
from .memory import MemoryBackend

__all__ = [
    "BACKEND_SCHEMES",
    "Backend",
    "EventSink",
    "MemoryBackend",
    "PendingEvent",
    "Replay",
    "create_backend",
    "replay_matching",
]
