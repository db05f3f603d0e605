"""A Redis publish: its script arguments, and whether a failed one may have been stored.

One publish is one Lua script (:data:`~ssehub.backends._redis_scripts.PUBLISH_LUA`). When it
fails, the caller must know whether Redis may have run it, because a retry of a stored publish
is a duplicate:

- it failed before the command left this process (no free connection in time, the connection
  refused, its handshake unanswered): nothing was stored, :class:`~ssehub.BackendUnavailable`;
- Redis answered with an error (out of memory, a read-only replica, still loading, a conflict of
  idempotency keys): Redis refused it before it wrote anything, :class:`~ssehub.BackendUnavailable`
  (:class:`~ssehub.IdempotencyKeyReused` for the conflict);
- the command was written to a connection and no answer came (the socket timeout: Redis frozen,
  a network dropping packets; or the connection broke while waiting): Redis may have run it, or
  may still run it when it resumes, since it reads what its socket holds,
  :class:`~ssehub.PublishOutcomeUnknown`.

redis-py reports the first and the last alike (``ConnectionError``, ``TimeoutError``), with
nothing that says on which side of the write they happened. The command pool
(:func:`tracking_pool_class`) tells: it hands a connection out only once that connection is
connected and its handshake answered (``BlockingConnectionPool.get_connection``), so whatever
fails after that happened while the command was written or awaited. A publish runs inside
:func:`attempt`, and the pool marks it as sent when it hands it a connection.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import BackendUnavailable, IdempotencyKeyReused, PublishOutcomeUnknown
from ..broker.events import StoredEvent
from ..broker.publication import publication_fingerprint
from ._redis_codec import encode_fields, stream_position

if TYPE_CHECKING:
    from ..broker.events import Position
    from .base import PendingEvent

__all__ = [
    "CONFLICT_REPLY",
    "Attempt",
    "attempt",
    "publish_arguments",
    "publish_error",
    "stored_events",
    "tracking_pool_class",
]

CONFLICT_REPLY: Final = "SSEHUB_IDEMPOTENCY_CONFLICT"
"""The error PUBLISH_LUA answers, before writing anything, for a key with another publication."""

_CURRENT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "ssehub_redis_publish_attempt", default=None
)


class Attempt:
    """One publish being sent: whether a connection was handed out for it (its command may
    have reached Redis)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


@contextmanager
def attempt() -> Iterator[Attempt]:
    """Track the commands sent inside the block (same task: redis-py awaits the pool inline)."""
    current = Attempt()
    token = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(token)


@cache
def tracking_pool_class(pool_class: type[Any]) -> type[Any]:
    """Return a subclass of redis-py's ``BlockingConnectionPool`` that marks the current
    :class:`Attempt` as sent when it hands a connection out (connected and checked)."""

    class TrackingConnectionPool(pool_class):  # type: ignore[misc]
        async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            connection = await super().get_connection(*args, **kwargs)
            current = _CURRENT.get()
            if current is not None:
                current.sent = True
            return connection

    return TrackingConnectionPool


def publish_error(exc: Exception, sent: bool) -> BackendUnavailable:
    """Translate what redis-py raised for a publish (see the module's docstring).

    Args:
        exc: the ``redis.RedisError``.
        sent: whether a connection was handed out for the publish.

    Raises:
        IdempotencyKeyReused: the script refused a key (nothing was written).
    """
    from redis import exceptions

    if isinstance(exc, exceptions.ResponseError) and str(exc).startswith(CONFLICT_REPLY):
        raise IdempotencyKeyReused(
            "this idempotency key names a different publication; nothing was published"
        ) from exc
    answered = isinstance(exc, (exceptions.ResponseError, exceptions.BusyLoadingError))
    if sent and not answered:
        return PublishOutcomeUnknown(
            f"Redis did not answer the publish ({exc}): it may be stored; "
            "retrying with the same idempotency key is safe"
        )
    return BackendUnavailable(f"Redis is unavailable (publish): {exc}")


def stored_events(
    epoch: str,
    raw_ids: Sequence[Any],
    batch: Sequence[PendingEvent],
    timestamp: Callable[[Position], float],
) -> list[StoredEvent]:
    """Return the events of ``batch`` as PUBLISH_LUA stored them: ``raw_ids`` are its stream
    ids, in batch order, ``epoch`` the data set's; ``timestamp`` gives an event's time."""
    stored: list[StoredEvent] = []
    for raw_id, (topics, event, private) in zip(raw_ids, batch, strict=True):
        position = stream_position(raw_id)
        event_id = f"{epoch}-{position[0]}-{position[1]}"
        wire = event if event.id is not None else event.replace(id=event_id)
        stored.append(StoredEvent(event_id, topics, wire, timestamp(position), position, private))
    return stored


def publish_arguments(
    batch: Sequence[PendingEvent],
    idempotency_keys: Sequence[str | None] | None,
    head: list[str | int],
    topic_index: dict[str, int],
) -> list[str | int]:
    """Return PUBLISH_LUA's ARGV: ``head`` (the bounds, ``now``, the topic names), the
    idempotency section (0, or one ``key, fingerprint`` pair per event, ``""`` for no key),
    then each event (its topic indices and fields).

    With an empty ``topic_index`` every event gets no topic stream: it is appended to the log
    only (read by every process's reader), so no history keeps it (a transient event)."""
    args = list(head)
    if idempotency_keys is None:
        args.append(0)
    else:
        args.append(len(batch))
        for pending, key in zip(batch, idempotency_keys, strict=True):
            args += ["", ""] if key is None else [key, publication_fingerprint(pending)]
    for topics, event, private in batch:
        fields = encode_fields(topics, event, private)
        targets = [topic_index[t] for t in topics] if topic_index else []
        args += [len(targets), *targets, len(fields), *fields]
    return args
