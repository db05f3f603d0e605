"""How the Redis backend answers a resume: one read shared by identical requests, then its meaning.

:class:`SharedReads` lets concurrent identical requests (same topics, same id) share one read.
:func:`replay_from_snapshot` turns the answer of the replay script (see
:data:`ssehub.backends._redis_scripts.REPLAY_LUA`) into a :class:`~ssehub.backends.Replay`: the
retained events after the id, merged by position, or the reason the id cannot be resumed.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import BackendUnavailable
from ..broker.events import ResetReason
from ._redis_codec import decode_entry, stream_position, text
from .base import Replay

if TYPE_CHECKING:
    from ..broker.events import Position, StoredEvent

__all__ = ["SharedReads", "replay_from_snapshot"]

Read = Callable[[Collection[str], str], Awaitable[Replay]]
"""Reads the replay of ``(topics, last_event_id)`` from Redis."""


class _Flight:
    """One replay in progress, which identical concurrent requests wait for and share."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Replay | None = None
        self.error: BackendUnavailable | None = None


class SharedReads:
    """Makes concurrent identical replay requests share one read.

    When a hub process goes away, all its clients reconnect at once, mostly with the same last
    id: one read (and one decoding, and one encoding of each event) then serves all of them.

    Args:
        read: the read to share.
    """

    def __init__(self, read: Read) -> None:
        self._read = read
        # Replays in progress, by topics, id and tip (see __call__).
        self._flights: dict[tuple[frozenset[str], str, str | None], _Flight] = {}

    async def __call__(
        self, topics: Collection[str], last_event_id: str, *, tip: str | None = None
    ) -> Replay:
        """Return the replay of ``topics`` after ``last_event_id``, read once for all waiters.

        Args:
            topics: the topics to replay.
            last_event_id: the client's id.
            tip: the log's newest id as the caller last saw it (a pattern resume reads it when
                it lists the topics): only requests that saw the same tip share a read.

        Raises:
            BackendUnavailable: Redis cannot be reached (every waiter of that read gets it).
        """
        key = (frozenset(topics), last_event_id, tip)
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.result is not None:
                return flight.result
            if flight.error is not None:
                raise BackendUnavailable(str(flight.error)) from flight.error
            # The first caller was cancelled (its client left): read for ourselves.
            return await self(topics, last_event_id, tip=tip)
        flight = _Flight()
        self._flights[key] = flight
        try:
            flight.result = await self._read(topics, last_event_id)
        except BackendUnavailable as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()
        return flight.result


def replay_from_snapshot(
    raw: Any, epoch: str, position: Position, timestamp: Callable[[Position], float]
) -> Replay:
    """Interpret the replay script's answer for a resume after ``(epoch, position)``.

    Args:
        raw: the script's reply: the current epoch, the newest id, the ``forgotten`` mark, then
            per topic ``(newest id trimmed, first id inside the age bound, entries after the
            client's id, newest id when no entry is inside the age bound)``; Redis's nil
            (``None``) for each that is unset.
        epoch: the epoch of the client's id.
        position: the position of the client's id.
        timestamp: gives the broker-clock time at which an event of a position was stored.

    Returns:
        The events after the id on every topic, each once in position order, or a reset:
        ``UNKNOWN`` for an id of another data set or from the future, ``EXPIRED`` when an event
        after the id is no longer retained.
    """
    current_epoch, last, forgotten = raw[0], raw[1], raw[2]
    if current_epoch is None or text(current_epoch) != epoch:
        return Replay(reset=ResetReason.UNKNOWN)  # another data set, or never published
    if last is None or position > stream_position(last):
        return Replay(reset=ResetReason.UNKNOWN)  # from the future: never issued
    # A topic without live history (aged out, removed, or never published) answers from the
    # global watermark, raised by the marks of such topics, as in the memory backend: the
    # events right after an older id may have been that topic's, so it is expired.
    marks = [forgotten]
    for gone, first_kept, _, newest in raw[3:]:
        if first_kept is None:
            marks += [gone, newest]
    watermark = max((stream_position(mark) for mark in marks if mark is not None), default=None)
    per_topic: list[list[StoredEvent]] = []
    for gone, first_kept, entries, _ in raw[3:]:
        if first_kept is None:
            if watermark is not None and position < watermark:
                return Replay(reset=ResetReason.EXPIRED)
            continue  # nothing after the id is retained
        if gone is not None and position < stream_position(gone):
            return Replay(reset=ResetReason.EXPIRED)  # an event after the id was trimmed
        events = [decode_entry(entry_id, fields, epoch, timestamp) for entry_id, fields in entries]
        if events and events[0].position < stream_position(first_kept):
            # An event after the id is past the age bound (trimmed at the next publish).
            return Replay(reset=ResetReason.EXPIRED)
        per_topic.append(events)
    merged: list[StoredEvent] = []
    for event in heapq.merge(*per_topic, key=lambda item: item.position):
        if not merged or merged[-1].position != event.position:
            merged.append(event)
    return Replay(events=merged, position=position)
