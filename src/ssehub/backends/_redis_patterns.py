"""How the Redis backend resumes a pattern subscription: list, match, replay, cut at the tip.

Redis cannot list the topics and read their streams in one step that Python code can match
between, so a resume with patterns (:func:`replay_matching`) runs in three:

1. one ``MULTI`` reads, at one instant, the newest id of the log (the tip ``L``), the
   ``forgotten`` mark and the names of every topic with history (:func:`topics_at_tip`);
2. the matchers pick the topics in Python (one match per topic with history and pattern: at
   most ``history_topics`` topics);
3. the replay script reads those topics (and the exact ones) after the client's id, and every
   event after ``L`` is dropped.

Why that hands over to the live queue with no gap and no duplicate: the broker registered the
subscription before step 1, so every event the reader delivers from then on is queued. An event
at or before ``L`` on a matching topic was stored before step 1, so its topic was listed and the
replay has it (or the trim marks make the id ``expired``). An event after ``L`` was stored after
step 1, hence delivered by the reader after the subscription registered: it is in the queue, and
not in the replay. The broker then drops queued events at or before the last replayed one.

Concurrent identical resumes share one replay read only when they saw the same tip (the key
includes ``L``): a read started before a later subscriber registered could miss what that
subscriber's queue also lacks, but not if no event was stored in between.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from .._exceptions import BrokerClosed
from ..broker.events import ResetReason
from ._redis_client import unavailable
from ._redis_codec import parse_event_id, stream_position, text
from .base import Replay

if TYPE_CHECKING:
    from ..broker.patterns import TopicMatcher
    from .redis import RedisBackend

__all__ = ["replay_matching", "topics_at_tip"]


async def topics_at_tip(self: RedisBackend) -> tuple[str | None, str | None, list[str]]:
    """Read ``(newest id, forgotten id, topics with history)`` at one instant (one ``MULTI``).

    Ids are ``<ms>-<seq>`` or ``None`` when unset. The topics are those of the ``newest`` set
    (and of the set older versions kept), aged out but not yet removed ones included: the
    replay script tells them apart.

    Raises:
        BackendUnavailable: Redis cannot be reached.
    """
    client = self._client
    if client is None:
        raise BrokerClosed("the Redis backend is not started")
    meta, newest, legacy = self._keys[1], self._keys[3], self._keys[4]
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hmget(meta, "last", "forgotten")
            pipe.zrange(newest, 0, -1)
            pipe.smembers(legacy)
            (last, forgotten), live, old = await pipe.execute()
    except self._redis.RedisError as exc:
        self._commands_ok = False
        raise unavailable("list topics", exc) from exc
    self._commands_ok = True
    names = sorted({text(name) for name in (*live, *old)})
    return (
        None if last is None else text(last),
        None if forgotten is None else text(forgotten),
        names,
    )


async def replay_matching(
    self: RedisBackend,
    topics: Collection[str],
    matchers: Sequence[TopicMatcher],
    last_event_id: str,
) -> Replay:
    """Return the retained events after ``last_event_id`` on ``topics`` and on every topic with
    history that one of ``matchers`` matches, up to the log's tip when the topics were listed
    (see :func:`ssehub.backends.replay_matching` and this module's docstring).

    Cost: one ``MULTI`` listing at most ``history_topics`` names, one match per name and
    matcher, then one replay script over the matched topics (at most ``history_size`` entries
    each).

    Raises:
        BackendUnavailable: Redis cannot be reached.
    """
    parsed = parse_event_id(last_event_id)
    if parsed is None:
        return Replay(reset=ResetReason.UNKNOWN)
    position = parsed[1]
    last, forgotten, listed = await self._topics_at_tip()
    if last is None:  # nothing was ever published in this data set
        return Replay(reset=ResetReason.UNKNOWN)
    names = dict.fromkeys(topics)
    for name in listed:
        if name not in names and any(matcher.matches(name) for matcher in matchers):
            names[name] = None
    replay = await self._shared_replay(names, last_event_id, tip=last)
    if replay.reset is not None:
        return replay
    if forgotten is not None and position < stream_position(forgotten):
        # A topic removed whole after the id may have been one a matcher matches.
        return Replay(reset=ResetReason.EXPIRED)
    tip = stream_position(last)
    events = replay.events
    end = len(events)
    while end and events[end - 1].position > tip:
        end -= 1  # stored after the listing: the subscription's queue has it
    return Replay(events=events[:end], position=replay.position)
