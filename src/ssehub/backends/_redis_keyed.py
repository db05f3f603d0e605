"""The Redis backend's answer to "which event does this idempotency key name?".

The publish script records each key in ``ssehub:{<p>}:idem`` as ``"<fingerprint> <stream id>"``
(:mod:`ssehub.backends._redis_scripts`) and counts a record older than the age bound as absent;
the event's id is the data set's epoch and that stream id. Publisher-chosen ids
(:mod:`ssehub.broker.chosen_ids`) are resolved through it, from any process sharing the data
set. Its own module: ``redis.py`` is at the size the project allows a module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import BackendUnavailable, BrokerClosed
from ._redis_codec import decode_entry, stream_position, text

if TYPE_CHECKING:
    from ..broker.events import StoredEvent
    from .redis import RedisBackend

__all__ = ["redis_keyed_event"]


async def redis_keyed_event(backend: RedisBackend, key: str) -> StoredEvent | None:
    """Return the event ``key`` names, or ``None`` when it names none (any more).

    Two round trips, read-only: the key's record (and the epoch), then the event's entry in
    the log (the caller needs its topics and private flag, not only its id).

    Args:
        backend: a started Redis backend.
        key: the idempotency key.

    Raises:
        BackendUnavailable: Redis cannot be reached.
        BrokerClosed: the backend is not started.
    """
    client = backend._client
    if client is None:
        raise BrokerClosed("the Redis backend is not started")
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hget(backend._idempotency_keys[0], key)
            pipe.hget(backend._keys[1], "epoch")
            record, epoch = await pipe.execute()
        if record is None or epoch is None:
            return None
        _, _, stream_id = text(record).partition(" ")
        try:
            position = stream_position(stream_id)
        except ValueError:
            return None
        # The same age bound the publish script applies: an older record names nothing.
        if position[0] < backend._now_ms() - backend._ttl_ms:
            return None
        entries = await client.xrange(backend._keys[0], stream_id, stream_id, count=1)
    except backend._redis.RedisError as exc:
        raise BackendUnavailable(f"Redis: cannot look up an event id: {exc}") from exc
    if not entries:
        return None  # trimmed from the log: out of history
    entry_id, fields = entries[0]
    if entry_id is None:
        return None
    try:
        return decode_entry(entry_id, fields, None, backend._timestamp)
    except (KeyError, TypeError, ValueError):
        return None
