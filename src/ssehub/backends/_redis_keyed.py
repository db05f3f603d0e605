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
from ._redis_codec import stream_position, text

if TYPE_CHECKING:
    from .redis import RedisBackend

__all__ = ["redis_keyed_event_id"]


async def redis_keyed_event_id(backend: RedisBackend, key: str) -> str | None:
    """Return the id of the event ``key`` names, or ``None`` when it names none (any more).

    One round trip (a pipeline of two ``HGET``), read-only.

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
    except backend._redis.RedisError as exc:
        raise BackendUnavailable(f"Redis: cannot look up an event id: {exc}") from exc
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
    return f"{text(epoch)}-{position[0]}-{position[1]}"
