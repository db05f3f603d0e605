"""What a subscription yields: stored events and the broker's two notices (reset, dropped).

A :class:`StoredEvent` is an event after the backend has given it an id and a place in history.
Its ``event`` already carries that id, and ``event.encode()`` is computed once and cached, so
the same bytes go to every subscriber.

Notices use reserved event types (``ssehub.reset`` and ``ssehub.dropped``; publishers may not
use the ``ssehub.`` prefix) and carry no ``id:`` field, so they never move a browser's
``lastEventId`` (WHATWG HTML §9.2.6: only an ``id:`` field updates it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from ..wire import ServerSentEvent

__all__ = [
    "DROPPED_EVENT_TYPE",
    "RESERVED_EVENT_PREFIX",
    "RESET_EVENT_TYPE",
    "Dropped",
    "Position",
    "Reset",
    "ResetReason",
    "StoredEvent",
]

RESERVED_EVENT_PREFIX: Final = "ssehub."
"""Event types starting with this are the broker's own; publishing one is refused."""

RESET_EVENT_TYPE: Final = "ssehub.reset"
"""The reset notice's event type; data ``{"reason": "malformed"|"unknown"|"expired"}``."""

DROPPED_EVENT_TYPE: Final = "ssehub.dropped"
"""The event type of the drop notice; its data is ``{"dropped": <count>}``."""

Position = tuple[int, ...]
"""A backend-defined ordering key for ids (memory: ``(sequence,)``; Redis: ``(ms, seq)``)."""


class ResetReason(str, enum.Enum):
    """Why a ``Last-Event-ID`` could not be resumed exactly."""

    MALFORMED = "malformed"
    """The value is too long or has characters no id of ours can have."""
    UNKNOWN = "unknown"
    """Well-formed, but not issued by this broker's backend (another epoch, or from the future)."""
    EXPIRED = "expired"
    """Issued by us, but events after it have already left the history (count or age bound)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with its broker-assigned id, as stored in history and sent to subscribers.

    Attributes:
        id: the id (also ``event.id``).
        topics: the topics it was published to, in publish order, without duplicates.
        event: the :class:`~ssehub.ServerSentEvent` with its ``id`` set; ``event.encode()`` gives
            the wire bytes, encoded once and shared by every subscriber.
        timestamp: the broker clock's time when it was stored (drives history age).
        position: the backend's ordering key; compare positions of one backend only.
        private: whether only subscribers authorized for one of ``topics`` may receive it (the
            hub filters; the broker itself delivers to every subscriber, its caller decides).
    """

    id: str
    topics: tuple[str, ...]
    event: ServerSentEvent
    timestamp: float
    position: Position = field(repr=False)
    private: bool = False

    def encode(self) -> bytes:
        """Return the wire bytes (cached on the event, so free after the first call)."""
        return self.event.encode()


@dataclass(frozen=True, slots=True)
class Reset:
    """Notice, always first: the ``Last-Event-ID`` could not be resumed; the stream is live.

    Attributes:
        reason: why.
    """

    reason: ResetReason

    def encode(self) -> bytes:
        """Return the ``ssehub.reset`` frame (no ``id:``; never contains the client's value)."""
        return _RESET_FRAMES[self.reason]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Notice: ``count`` events were skipped here by the ``drop_oldest`` policy.

    Attributes:
        count: how many events are missing at this point of the stream.
    """

    count: int

    def encode(self) -> bytes:
        """Return the ``ssehub.dropped`` frame."""
        return ServerSentEvent.json({"dropped": self.count}, event=DROPPED_EVENT_TYPE).encode()


_RESET_FRAMES: Final = {
    reason: ServerSentEvent.json({"reason": reason.value}, event=RESET_EVENT_TYPE).encode()
    for reason in ResetReason
}
