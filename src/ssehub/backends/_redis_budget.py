"""The Redis backend's trimming beyond a publish: byte budgets, topic removal, bytes read.

The scripts (:mod:`ssehub.backends._redis_scripts`) count the bytes of every stream in the hash
``ssehub:{<p>}:bytes`` (topic -> bytes of its stream, ``""`` the log, ``" total"`` all topic
streams together) and score each topic by the age of its oldest entry (``ms * 1024 + seq``) in
``ssehub:{<p>}:oldest``.
An entry's size is the length of its field names and values plus :data:`ENTRY_OVERHEAD`: roughly
what it costs in Redis's memory, so ``history_total_bytes`` bounds the topic streams' copies of
the events in Redis, and the log (which holds each event once more) separately.

Methods of :class:`~ssehub.backends.redis.RedisBackend` defined here: ``_expire`` (aged-out
topics, and the totals back within the budgets) and ``history_usage``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final

from .._exceptions import BackendUnavailable, BrokerClosed
from ._redis_codec import text

if TYPE_CHECKING:
    from ..broker.history import HistoryBudget
    from .base import PendingEvent
    from .redis import RedisBackend

__all__ = [
    "ENTRY_OVERHEAD",
    "TOTAL_FIELD",
    "budget_arguments",
    "check_batch",
    "expire",
    "history_usage",
    "keys",
]

ENTRY_OVERHEAD: Final = 64
"""Bytes a stream entry costs in Redis beyond its field names and values (its id, the listpack
headers; larger entries get a node of their own, which costs about this more)."""

TOTAL_FIELD: Final = " total"
"""The field of the bytes hash that counts every topic stream (no topic contains a space)."""


def keys(base: str) -> list[str]:
    """Return the keys the scripts take last: ``oldest``, ``bytes`` (``base`` is
    ``ssehub:{<prefix>}:``)."""
    return [base + "oldest", base + "bytes"]


def budget_arguments(budget: HistoryBudget) -> list[int]:
    """Return the publish script's last four arguments."""
    return [budget.history_bytes, budget.history_total_bytes, budget.history_topics, ENTRY_OVERHEAD]


async def expire(self: RedisBackend, candidates: Sequence[bytes | str]) -> None:
    """Remove those of ``candidates`` (topic names) whose every event aged out; then bring the
    topic streams back within the budgets (``history_total_bytes``: their oldest entries;
    ``history_topics``: the topics published to least recently), among the candidates.

    One script, which checks each topic again: one published to since it was picked stays.

    Raises:
        redis.RedisError: the script failed.
    """
    script = self._expire_script
    assert script is not None
    names = list(dict.fromkeys(text(name) for name in candidates))
    keys = [*self._keys[1:5], *self._budget_keys, *(self._topic_key(t) for t in names)]
    budget = self.budget
    bounds = [budget.history_total_bytes, budget.history_topics, ENTRY_OVERHEAD]
    await script(keys=keys, args=[self._ttl_ms, self._now_ms(), *bounds, *names])


def check_batch(budget: HistoryBudget, batch: Sequence[PendingEvent]) -> None:
    """Refuse a batch with an event over ``budget.max_event_size``, before anything is sent.

    Raises:
        EventTooLarge: an event is too large (nothing of the batch is stored).
    """
    for _, event, _ in batch:
        budget.check_event(event)


async def history_usage(
    self: RedisBackend, topics: Collection[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Return the events and the bytes each topic retains (every topic when ``None``), and
    refresh :attr:`RedisBackend.history_bytes`; an event under several topics counts in each.

    Bytes count entries past the age bound until a publish trims them.

    Raises:
        BackendUnavailable: Redis cannot be reached.
    """
    sizes = await self.history_sizes(topics)
    client = self._client
    if client is None:
        raise BrokerClosed("the Redis backend is not started")
    names = list(sizes)
    try:
        raw = await client.hmget(self._budget_keys[1], [*names, TOTAL_FIELD])
    except self._redis.RedisError as exc:
        self._commands_ok = False
        raise BackendUnavailable(f"Redis is unavailable (history bytes): {exc}") from exc
    *per_topic, total = raw
    self.history_bytes = int(total or 0)
    return {
        name: (sizes[name], int(value or 0)) for name, value in zip(names, per_topic, strict=True)
    }
