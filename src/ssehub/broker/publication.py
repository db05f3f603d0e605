"""What a publication is, and how its arguments become the event a backend stores.

Validation happens here, before anything reaches the backend: ``publish_many`` checks every item
first, so one invalid item publishes nothing.

An idempotency key names one publication: a backend that is given the key of a publication it
still remembers answers that first publication's event instead of storing a new one, and refuses
the key with a different publication (compared by :func:`publication_fingerprint`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import EventValidationError, InvalidIdempotencyKey
from ..wire import ServerSentEvent
from .events import RESERVED_EVENT_PREFIX
from .topics import normalize_topics

if TYPE_CHECKING:
    from ..backends.base import Backend, PendingEvent
    from .events import StoredEvent

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "Publication",
    "check_idempotency_key",
    "key_list",
    "prepare_batch",
    "prepare_publication",
    "publication_fingerprint",
    "store",
]

MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
"""Characters in an idempotency key: room for a UUID with a prefix or a business id, as other
APIs allow (Stripe: 255), while a key stays a small, bounded part of what is remembered."""

IDEMPOTENCY_KEY_PATTERN: Final = "^[!-~]+$"
"""Visible ASCII (``!`` to ``~``): what an HTTP header carries unchanged (no spaces, which HTTP
trims, no control characters) and what logs show without escaping."""

_KEY_RE: Final = re.compile(r"[!-~]+")


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
        idempotency_key: names this publication, so a retry of it stores nothing new (see
            :meth:`Broker.publish`).
    """

    topics: str | Sequence[str]
    data: Any
    event: str | None = None
    retry: int | None = None
    private: bool = False
    idempotency_key: str | None = None


def check_idempotency_key(key: object) -> str:
    """Return ``key`` if it can name a publication.

    Raises:
        InvalidIdempotencyKey: ``key`` is not a string of 1 to
            :data:`MAX_IDEMPOTENCY_KEY_LENGTH` visible ASCII characters.
    """
    if not isinstance(key, str):
        raise InvalidIdempotencyKey("it must be a string")
    if not key:
        raise InvalidIdempotencyKey("it must not be empty")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"it is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    if _KEY_RE.fullmatch(key) is None:
        raise InvalidIdempotencyKey("only visible ASCII characters (! to ~) are allowed")
    return key


def publication_fingerprint(pending: PendingEvent) -> str:
    """Return a digest of everything a publication stores: topics, event fields, privacy.

    Two publications with one idempotency key must have the same fingerprint; the backends
    compare them (the key alone would let a reused key silently drop a different event). The
    fields are length-prefixed, so no two different publications hash the same input.
    """
    topics, event, private = pending
    digest = hashlib.blake2b(digest_size=16, person=b"ssehub-publish")
    parts = (
        "\x00".join(topics),
        event.data,
        event.event,
        None if event.retry is None else str(event.retry),
        event.comment,
        event.sep,
        "1" if private else "0",
    )
    for part in parts:
        if part is None:
            digest.update(b"-")
        else:
            raw = part.encode("utf-8", "surrogatepass")
            digest.update(b"%d:" % len(raw))
            digest.update(raw)
    return digest.hexdigest()


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


def key_list(idempotency_key: str | None) -> list[str | None] | None:
    """Return the keys of a one-event batch for :func:`store` (``None`` without a key).

    Raises:
        InvalidIdempotencyKey: the key is invalid.
    """
    return None if idempotency_key is None else [check_idempotency_key(idempotency_key)]


def prepare_batch(
    items: Iterable[Publication], *, max_topics: int
) -> tuple[list[PendingEvent], list[str | None] | None]:
    """Validate every item of a batch (see :func:`prepare_publication`) and its key.

    Returns:
        The events, and their idempotency keys (``None`` when no item has one).

    Raises:
        InvalidTopic, EventValidationError: as :func:`prepare_publication`.
        InvalidIdempotencyKey: a key is invalid.
    """
    batch: list[PendingEvent] = []
    keys: list[str | None] = []
    for item in items:
        batch.append(
            prepare_publication(
                item.topics, item.data, item.event, item.retry, item.private, max_topics=max_topics
            )
        )
        key = item.idempotency_key
        keys.append(None if key is None else check_idempotency_key(key))
    return batch, (keys if any(key is not None for key in keys) else None)


async def store(
    backend: Backend, batch: Sequence[PendingEvent], keys: Sequence[str | None] | None
) -> list[StoredEvent]:
    """Hand ``batch`` to ``backend``; keys only when there are some, so a backend written
    before idempotency keys (without the ``idempotency_keys`` parameter) still publishes."""
    if keys is None:
        return await backend.publish(batch)
    return await backend.publish(batch, idempotency_keys=keys)
