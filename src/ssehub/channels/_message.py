"""A channel message: a type and a JSON payload, and how it maps to a server-sent event.

On the wire a message is one event: ``event:`` is the message type, ``data:`` the payload as
compact JSON, and ``id:`` the id the channel's broker assigned (so ``Last-Event-ID`` resume works
as for topics). Types starting with ``ssehub.`` are reserved: :data:`END_OF_STREAM` ends a
listener's stream, and the broker's notices (``ssehub.reset``, ``ssehub.dropped``) arrive as
messages of those types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from .._exceptions import EventValidationError
from ..broker.events import RESERVED_EVENT_PREFIX, Dropped, Reset, StoredEvent
from ..wire import ServerSentEvent

__all__ = ["END_OF_STREAM", "MAX_TYPE_LENGTH", "Message"]

END_OF_STREAM: Final = "ssehub.end"
"""The reserved type that ends a listener's stream. Dispatching ``Message(END_OF_STREAM)`` stops
that listener (broadcasting it stops all of them) after the messages already queued; a
listener's SSE stream ends with an ``event: ssehub.end`` frame, so a client knows not to
reconnect."""

MAX_TYPE_LENGTH: Final = 256
"""Characters. A type is an SSE ``event:`` name; longer names only waste every frame's bytes."""

_END_FRAME: Final = ServerSentEvent("null", event=END_OF_STREAM).encode()


@dataclass(frozen=True, slots=True)
class Message:
    """One message for channel listeners.

    Args:
        type: the message type, sent as the SSE ``event:`` field: 1-256 characters, no CR, LF
            or NUL. Types starting with ``ssehub.`` are reserved (only :data:`END_OF_STREAM`
            may be sent).
        payload: any JSON value (``None`` is JSON ``null``); checked when the message is sent.
        id: the id the channel assigned; set on delivered messages, ignored when sending and
            in comparisons.

    Raises:
        EventValidationError: ``type`` is not a valid event name.
    """

    type: str
    payload: Any = None
    id: str | None = field(default=None, compare=False)
    _frame: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = self.type
        if not isinstance(kind, str):
            raise EventValidationError("type", f"must be str, not {type(kind).__name__}")
        if not 0 < len(kind) <= MAX_TYPE_LENGTH:
            raise EventValidationError("type", f"must be 1-{MAX_TYPE_LENGTH} characters")
        if "\r" in kind or "\n" in kind or "\0" in kind:
            # WHATWG HTML §9.2.5: CR and LF end a field; NUL is refused like in ids.
            raise EventValidationError("type", "must not contain CR, LF or NUL")

    @classmethod
    def end(cls) -> Message:
        """Return the end-of-stream message."""
        return cls(END_OF_STREAM, _frame=_END_FRAME)

    def encode(self) -> bytes:
        """Return the SSE frame of a delivered message, as the channel stored it (with its
        ``id:``), so ``EventSourceResponse(message_stream)`` sends it as is; a message built
        by hand is encoded from its type and payload, without id.

        Raises:
            EventValidationError: the payload of a hand-built message is not JSON.
        """
        if self._frame is not None:
            return self._frame
        return ServerSentEvent.json(self.payload, event=self.type).encode()

    @property
    def is_end(self) -> bool:
        """Whether this is the end-of-stream message."""
        return self.type == END_OF_STREAM

    def to_event(self) -> ServerSentEvent:
        """Return the event to publish (without id).

        Raises:
            EventValidationError: the type is reserved, or the payload is not JSON-serialisable.
        """
        if self.type.startswith(RESERVED_EVENT_PREFIX):
            raise EventValidationError(
                "type", f"message types starting with {RESERVED_EVENT_PREFIX!r} are reserved"
            )
        return ServerSentEvent.json(self.payload, event=self.type)


def end_frame() -> bytes:
    """Return the encoded end-of-stream frame (no ``id:``: it must not move ``lastEventId``)."""
    return _END_FRAME


def message_from_item(item: StoredEvent | Reset | Dropped) -> Message:
    """Turn what a broker subscription yields back into a :class:`Message`.

    Args:
        item: a stored event published by a channel, or a broker notice.

    Returns:
        The message, with ``id`` set for stored events; notices become messages of their
        reserved type (``ssehub.reset``: ``{"reason": ...}``, ``ssehub.dropped``:
        ``{"dropped": n}``) without id.
    """
    if isinstance(item, StoredEvent):
        event = item.event
        data = event.data
        payload = None if data is None else json.loads(data)
        return Message(event.event or "message", payload, id=item.id, _frame=item.encode())
    if isinstance(item, Reset):
        return Message("ssehub.reset", {"reason": item.reason.value}, _frame=item.encode())
    return Message("ssehub.dropped", {"dropped": item.count}, _frame=item.encode())
