"""Per-topic event history bounded by count and by age: pure, synchronous, clock-free.

The in-memory backend keeps one :class:`TopicLog` per topic and a :class:`History` over them.
Each log is a list with a moving head, ordered by position, so finding the events after an id
is a binary search (O(log n)), never a scan, and evicting from the head is amortised O(1).

Every log remembers the position of the newest event it has evicted. A ``Last-Event-ID`` older
than that position cannot be resumed exactly (the events right after it are gone), so the
broker sends a reset instead of pretending: that is how "expired" is decided, in O(1) per topic.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable
from typing import Final

from .events import Position, StoredEvent

__all__ = ["DEFAULT_HISTORY_SIZE", "DEFAULT_HISTORY_TTL", "History", "TopicLog"]

DEFAULT_HISTORY_SIZE: Final = 1000
"""Events kept per topic. The same order as Mercure's default history; at ~1 KiB an event it
bounds a topic at about 1 MiB while covering minutes of a busy feed."""

DEFAULT_HISTORY_TTL: Final = 3600.0
"""Seconds. A browser that reconnects after a laptop sleep, a train tunnel or a deploy (minutes,
up to an hour) still resumes exactly; older ids get an honest ``expired`` reset."""

_COMPACT_AT = 256  # evicted head slots kept before the list is compacted (amortises del a[:n])


def _position(event: StoredEvent) -> Position:
    return event.position


class TopicLog:
    """The retained events of one topic, oldest first."""

    __slots__ = ("_head", "_items", "evicted_upto")

    def __init__(self) -> None:
        self._items: list[StoredEvent] = []
        self._head = 0
        self.evicted_upto: Position = ()
        """The position of the newest evicted event, or ``()`` when nothing was evicted."""

    def __len__(self) -> int:
        return len(self._items) - self._head

    def append(self, event: StoredEvent) -> None:
        """Add the newest event (positions must increase)."""
        self._items.append(event)

    def oldest(self) -> StoredEvent | None:
        """Return the oldest retained event, or ``None`` when empty."""
        return self._items[self._head] if self._head < len(self._items) else None

    def evict_oldest(self) -> None:
        """Forget the oldest retained event (the log must not be empty)."""
        self.evicted_upto = self._items[self._head].position
        self._head += 1
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._items):
            del self._items[: self._head]
            self._head = 0

    def after(self, position: Position) -> list[StoredEvent]:
        """Return the retained events whose position is greater than ``position``, in order."""
        items = self._items
        start = bisect_right(items, position, lo=self._head, key=_position)
        return items[start:]


class History:
    """Histories of all topics, bounded per topic by ``max_size`` events and ``max_age`` seconds.

    Args:
        max_size: events kept per topic (at least 1).
        max_age: seconds an event is kept, measured on the caller's clock (``> 0``).
    """

    def __init__(self, max_size: int, max_age: float) -> None:
        self.max_size = max_size
        self.max_age = max_age
        self._logs: dict[str, TopicLog] = {}
        # Logs that became empty are deleted; the newest position they had evicted is folded in
        # here, so an id older than it is still recognised as expired for a topic without a log
        # (conservative: it may have been that topic's events that went).
        self._forgotten: Position = ()

    def append(self, event: StoredEvent) -> None:
        """Store ``event`` in the log of each of its topics, evicting by count."""
        for topic in event.topics:
            log = self._logs.get(topic)
            if log is None:
                log = self._logs[topic] = TopicLog()
                # The topic may have had a log that was deleted: inherit the bound so an id
                # older than what that log evicted is still not resumed as if complete.
                log.evicted_upto = self._forgotten
            log.append(event)
            if len(log) > self.max_size:
                log.evict_oldest()

    def expire(self, now: float, topics: Iterable[str] | None = None) -> None:
        """Evict events older than ``max_age`` from ``topics`` (default: every topic).

        Empty logs are deleted so topics that are no longer used cost nothing.
        """
        cutoff = now - self.max_age
        names = list(self._logs) if topics is None else topics
        for topic in names:
            log = self._logs.get(topic)
            if log is None:
                continue
            oldest = log.oldest()
            while oldest is not None and oldest.timestamp <= cutoff:
                log.evict_oldest()
                oldest = log.oldest()
            if oldest is None:
                self._forgotten = max(self._forgotten, log.evicted_upto)
                del self._logs[topic]

    def after(self, topics: Iterable[str], position: Position) -> list[StoredEvent] | None:
        """Return every retained event after ``position`` on any of ``topics``, once, in order.

        Returns:
            The events (an event stored under several of the topics appears once), or ``None``
            when an event after ``position`` on one of the topics was already evicted.
        """
        runs: list[list[StoredEvent]] = []
        for topic in topics:
            log = self._logs.get(topic)
            watermark = self._forgotten if log is None else log.evicted_upto
            if watermark > position:
                return None
            if log is not None:
                run = log.after(position)
                if run:
                    runs.append(run)
        if not runs:
            return []
        if len(runs) == 1:
            return runs[0]
        merged: list[StoredEvent] = []
        last: Position = ()
        for event in heapq.merge(*runs, key=_position):
            if event.position != last:  # the same event under two topics: deliver it once
                merged.append(event)
                last = event.position
        return merged

    def forget(self, topics: Iterable[str]) -> None:
        """Drop every retained event of ``topics`` at once, and their logs.

        Unlike expiry, this does not raise the bound of :meth:`after` for topics without a log:
        folding the dropped positions in would make resumes of *other* topics report
        ``expired`` for events that were never theirs. So an id from before the forget resumes
        a forgotten topic as if nothing had been published to it; callers forget only topics
        nobody may replay (a removed channel listener's private topic).
        """
        logs = self._logs
        for topic in topics:
            logs.pop(topic, None)

    def size(self, topic: str) -> int:
        """Return how many events ``topic`` retains."""
        log = self._logs.get(topic)
        return 0 if log is None else len(log)

    def topics(self) -> list[str]:
        """Return the topics that retain at least one event."""
        return list(self._logs)
