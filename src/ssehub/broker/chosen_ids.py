"""Publisher-chosen event ids: publish an event under an id its publisher names, resume after it.

Backends assign ids (:mod:`ssehub.broker.ids`) and order history by them. Some protocols let
the publisher choose the id clients see instead: Mercure's ``id`` field "will be used as the
SSE's id property" (draft-dunglas-mercure-07 §5), and a subscriber resumes with it in
``Last-Event-ID``. Here the event is stored as usual, under a backend id that keeps its place
in history, while its ``id:`` field on the wire is the chosen one; the chosen id is the
event's idempotency key (a digest of it, :func:`chosen_id_key`), which both backends already
map to the stored event at least as long as the event is in history (Redis: for
``history_ttl``; a resume after an evicted event then gets the usual ``expired`` reset). So:

* :func:`publish_with_id` stores the event once per chosen id: publishing the same id again
  with the same content returns the first event (a retry), with other content raises
  :class:`~ssehub.IdempotencyKeyReused` (an id names one event);
* :func:`resolve_chosen_id` answers the backend id of the event published under a chosen id,
  from any process sharing the backend (Redis), which :meth:`Broker.subscribe` resumes after
  exactly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import EventValidationError
from ..backends.memory import MemoryBackend
from .publication import prepare_publication, store

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .broker import Broker
    from .events import StoredEvent

__all__ = [
    "CHOSEN_ID_KEY_PREFIX",
    "HUB_ID_SHAPE",
    "chosen_id_key",
    "publish_with_id",
    "resolve_chosen_id",
]

HUB_ID_SHAPE: Final = re.compile(r"[0-9a-f]{8}(?:-[0-9]+){1,2}")
"""The form of the ids the built-in backends assign (``<epoch>-<n>``, ``<epoch>-<ms>-<seq>``):
refused as chosen ids, or one id could name two events and send a resuming client to the
wrong place in history."""

CHOSEN_ID_KEY_PREFIX: Final = "chosen-id:"
"""Prefix of the idempotency keys of chosen ids; keys the hub derives for its own publishers
are bare hex digests, so the two never collide."""


def chosen_id_key(event_id: str) -> str:
    """Return the idempotency key that names the event published under ``event_id``."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=24)
    return CHOSEN_ID_KEY_PREFIX + digest.hexdigest()


async def publish_with_id(
    broker: Broker,
    topics: str | Iterable[str],
    data: Any,
    *,
    event_id: str,
    event: str | None = None,
    retry: int | None = None,
    private: bool = False,
) -> StoredEvent:
    """Publish one event whose ``id:`` field is ``event_id`` (see :meth:`Broker.publish`).

    Args:
        broker: a running broker.
        topics: one topic or several.
        data: as :meth:`Broker.publish` takes it.
        event_id: the id subscribers see and resume with (no CR, LF or NUL).
        event: the event type.
        retry: the reconnection time in milliseconds.
        private: whether the event is private.

    Returns:
        The stored event: its ``id`` is the backend's (its place in history), its
        ``event.id`` is ``event_id``. A second publish with ``event_id`` and the same content
        returns the first event and stores nothing.

    Raises:
        BrokerClosed, InvalidTopic, EventValidationError, BackendUnavailable,
        PublishOutcomeUnknown: as :meth:`Broker.publish`.
        IdempotencyKeyReused: ``event_id`` already names an event with other content.
        EventValidationError: ``event_id`` has the form of the hub's own ids
            (:data:`HUB_ID_SHAPE`).
    """
    broker._check_running()
    if HUB_ID_SHAPE.fullmatch(event_id):
        raise EventValidationError("id", "has the form of the ids the hub assigns")
    names, sse, is_private = prepare_publication(
        topics, data, event, retry, private, max_topics=broker.max_topics
    )
    pending = (names, sse.replace(id=event_id), is_private)
    await broker._ready_to_store(names)  # as Broker.publish: nothing after the store
    stored = await store(broker.backend, (pending,), [chosen_id_key(event_id)])
    broker._published += 1
    return stored[0]


async def resolve_chosen_id(
    broker: Broker, event_id: str, *, readable: Callable[[StoredEvent], bool] | None = None
) -> str | None:
    """Return the backend id of the event published under ``event_id``, if still remembered.

    Args:
        broker: a running broker.
        event_id: a client's ``Last-Event-ID``.
        readable: whether the client may know of the event (its grants and its topics); an
            event it may not is answered as unknown, so that resuming is no oracle for the
            existence of private updates.

    Returns:
        The id :meth:`Broker.subscribe` resumes after, or ``None`` when no event in history
        was published under ``event_id`` that the client may know of (it may then be an id
        the backend assigned).

    Raises:
        BackendUnavailable: the backend cannot be reached.
    """
    found = await _keyed_event(broker.backend, chosen_id_key(event_id))
    if found is None or (readable is not None and not readable(found)):
        return None
    return found.id


async def _keyed_event(backend: Backend, key: str) -> StoredEvent | None:
    """The event an idempotency key names, for the two built-in backends (and any backend
    with an ``async keyed_event(key)`` method)."""
    custom = getattr(backend, "keyed_event", None)
    if custom is not None:
        found: StoredEvent | None = await custom(key)
        return found
    if isinstance(backend, MemoryBackend):
        remembered = backend._remembered(key, backend._clock.time())
        return None if remembered is None else remembered.event
    from ..backends._redis_keyed import redis_keyed_event
    from ..backends.redis import RedisBackend

    if isinstance(backend, RedisBackend):
        return await redis_keyed_event(backend, key)
    return None  # a backend that cannot tell: a chosen id then resumes as an unknown one
