"""What a publication is, and how its arguments become the event a backend stores.

Validation happens here, before anything reaches the backend: ``publish_many`` checks every item
first, so one invalid item publishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import EventValidationError
from ..wire import ServerSentEvent
from .events import RESERVED_EVENT_PREFIX
from .topics import normalize_topics

if TYPE_CHECKING:
    from ..backends.base import PendingEvent

__all__ = ["Publication", "prepare_publication"]


@dataclass(frozen=True, slots=True)
class Publication:
    """One item of :meth:`Broker.publish_many`: the arguments of :meth:`Broker.publish`.

    Attributes:
        topics: one topic or several.
        data: ``str`` (sent verbatim), any other JSON value (sent as compact JSON text), or a
            :class:`~ssehub.ServerSentEvent` whose ``data``/``comment``/``event``/``retry`` are
            used (its ``id`` is replaced by the broker's).
        event: the event type; no CR/LF, not starting with ``ssehub.``.
        retry: reconnection time in milliseconds for clients.
        private: deliver only to subscribers authorized for one of its topics (see
            :meth:`Broker.publish`).
    """

    topics: str | Sequence[str]
    data: Any
    event: str | None = None
    retry: int | None = None
    private: bool = False


def prepare_publication(
    topics: str | Iterable[str],
    data: Any,
    event: str | None,
    retry: int | None,
    private: bool = False,
    *,
    max_topics: int,
) -> PendingEvent:
    """Validate one publication and build its event, still without an id.

    ``str`` data is sent verbatim, a :class:`~ssehub.ServerSentEvent` is re-made without its
    id (``event``/``retry`` override its own when given), any other value is sent as JSON.

    Raises:
        InvalidTopic: a topic is invalid, or there are more than ``max_topics``.
        EventValidationError: ``data``, ``event`` or ``retry`` is invalid, or the event type is
            reserved (``ssehub.*``).
    """
    names = normalize_topics(topics, limit=max_topics)
    if isinstance(data, ServerSentEvent):
        sse = data.replace(
            id=None,
            event=data.event if event is None else event,
            retry=data.retry if retry is None else retry,
        )
    elif type(data) is str:
        sse = ServerSentEvent(data, event=event, retry=retry)
    else:
        sse = ServerSentEvent.json(data, event=event, retry=retry)
    if sse.event is not None and sse.event.startswith(RESERVED_EVENT_PREFIX):
        raise EventValidationError(
            "event", f"event types starting with {RESERVED_EVENT_PREFIX!r} are reserved"
        )
    return names, sse, bool(private)
