"""Event history bounded by count, age and bytes: pure, synchronous, clock-free.

The in-memory backend keeps one :class:`TopicLog` per topic and a :class:`History` over them.
Each log is a list with a moving head, ordered by position, so finding the events after an id
is a binary search (O(log n)), never a scan, and evicting from the head is amortised O(1). An
evicted slot is cleared at once, so an evicted event is freed as soon as nothing else (a
subscriber's queue) holds it, not when the list is next compacted.

Bounds (a :class:`HistoryBudget` besides the count and the age): bytes per topic, bytes in all
(an event stored under several topics counts once; the oldest events go first, whatever their
topic), and the number of topics (the one published to least recently goes, whole). The size of
an event is what it costs in memory (:func:`event_cost`), not only its length on the wire.

Every log remembers the position of the newest event it has evicted. A ``Last-Event-ID`` older
than that position cannot be resumed exactly (the events right after it are gone), so the
broker sends a reset instead of pretending: that is how "expired" is decided, in O(1) per topic.
"""

from __future__ import annotations

import heapq
import weakref
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .._exceptions import ConfigurationError, EventTooLarge
from .events import Position, StoredEvent

if TYPE_CHECKING:
    from ..wire import ServerSentEvent

__all__ = [
    "BUDGET_OPTIONS",
    "DEFAULT_HISTORY_BYTES",
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TOPICS",
    "DEFAULT_HISTORY_TOTAL_BYTES",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_MAX_EVENT_SIZE",
    "EVENT_OVERHEAD",
    "History",
    "HistoryBudget",
    "HistoryPool",
    "TopicLog",
    "event_cost",
]

DEFAULT_HISTORY_SIZE: Final = 1000
"""Events kept per topic. The same order as Mercure's default history; at ~1 KiB an event it
bounds a topic at about 1 MiB while covering minutes of a busy feed."""

DEFAULT_HISTORY_TTL: Final = 3600.0
"""Seconds. A browser that reconnects after a laptop sleep, a train tunnel or a deploy (minutes,
up to an hour) still resumes exactly; older ids get an honest ``expired`` reset."""

DEFAULT_MAX_EVENT_SIZE: Final = 1024 * 1024
"""Bytes of the largest event, as encoded for the wire without its ``id:`` line (which the
broker adds, under 64 bytes). Equal to the hub's default body limit (nginx's 1 MiB): a
``POST /publish`` body within that limit whose data has no line breaks always fits (JSON
escapes shrink or keep their size when encoded), while data made of line breaks, which grow
sevenfold on the wire (each becomes ``\\ndata: ``), is refused before it is stored."""

DEFAULT_HISTORY_BYTES: Final = 32 * 1024 * 1024
"""Bytes of history per topic (:func:`event_cost`): an eighth of the total, so one busy topic
of large events cannot take the whole budget. At 1 KiB an event the count bound (1000 events,
about 2.5 MiB with bookkeeping) is reached long before."""

DEFAULT_HISTORY_TOTAL_BYTES: Final = 256 * 1024 * 1024
"""Bytes of history across all topics: what publishers can make one process hold, whatever
they send (Redis: per copy of an event, in Redis's memory)."""

DEFAULT_HISTORY_TOPICS: Final = 10_000
"""Topics with history at once. Each costs a few hundred bytes of bookkeeping beyond its events;
the bound keeps a publisher inventing topic names (one event each) from growing that without
limit. Beyond it the topic published to least recently loses its history."""

BUDGET_OPTIONS: Final[dict[str, tuple[int, str]]] = {
    "max_event_size": (
        DEFAULT_MAX_EVENT_SIZE,
        (
            "largest event in bytes as sent to clients, without its id line (413 event_too_large "
            "above it); equal to --max-body-size, so a body within that limit fits unless its data "
            "is made of line breaks (7 bytes each on the wire)"
        ),
    ),
    "history_bytes": (
        DEFAULT_HISTORY_BYTES,
        (
            "bytes of history kept per topic, oldest events first (what events cost in memory: "
            "twice their encoded size, plus 0.6 KiB each), and of messages queued per "
            "channel listener; an eighth of --history-total-bytes, so one topic cannot take it all"
        ),
    ),
    "history_total_bytes": (
        DEFAULT_HISTORY_TOTAL_BYTES,
        (
            "bytes of history kept across all topics (each event once), oldest events first "
            "whatever their topic; the channels share another budget of this size; with Redis it "
            "bounds the copies in Redis (topic streams, and the log separately)"
        ),
    ),
    "history_topics": (
        DEFAULT_HISTORY_TOPICS,
        (
            "most topics with history; a new topic beyond it takes the place of the one published "
            "to least recently, whose history goes (its resumes get an 'expired' reset)"
        ),
    ),
}
"""The hub's settings of a :class:`HistoryBudget`, by field name: default and ``--help`` text
(:class:`~ssehub.hub.HubSettings` declares them from this, so the two cannot drift)."""

EVENT_OVERHEAD: Final = 600
"""Bytes an event costs in history beyond the length of its texts: the stored event, its id,
position and slots, and the headers of its two texts (measured with tracemalloc on CPython
3.11: about 560)."""

_COMPACT_AT = 256  # evicted head slots kept before the list is compacted (amortises del a[:n])
_DEAD_SLACK = 64  # released entries tolerated in the global order before it is rebuilt


def event_cost(event: StoredEvent) -> int:
    """Return what ``event`` costs in history, in bytes: twice its wire bytes (the encoded
    frame, and the text of its data and comment kept beside it, which never takes more memory
    than its UTF-8 form), its topic names, and :data:`EVENT_OVERHEAD`.

    An upper bound of what CPython holds, and cheap: one length, no walk over the text.
    """
    topics = event.topics
    # A topic name costs its str header and its slot in the topics tuple beyond its length.
    cost = 2 * len(event.event.encode()) + EVENT_OVERHEAD + 57 * len(topics)
    for topic in topics:
        cost += len(topic)
    return cost


@dataclass(frozen=True, slots=True)
class HistoryBudget:
    """Byte and topic bounds of a history, beside its count (``history_size``) and age.

    Args:
        max_event_size: bytes of the largest event, encoded, without its ``id:`` line; a
            larger one is refused with :class:`~ssehub.EventTooLarge` before anything is stored.
        history_bytes: bytes of history kept per topic (:func:`event_cost`); the oldest events
            go first. A topic keeps its newest event even if that alone is larger.
        history_total_bytes: bytes of history kept across every topic (an event under several
            topics counts once); the oldest events go first, whatever their topic.
        history_topics: topics with history at once; a new topic beyond it takes the place of
            the one published to least recently, whose history goes.

    Raises:
        ConfigurationError: a bound is not an int >= 1, or ``history_bytes`` is larger than
            ``history_total_bytes``.
    """

    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    history_bytes: int = DEFAULT_HISTORY_BYTES
    history_total_bytes: int = DEFAULT_HISTORY_TOTAL_BYTES
    history_topics: int = DEFAULT_HISTORY_TOPICS

    def __post_init__(self) -> None:
        for name in ("max_event_size", "history_bytes", "history_total_bytes", "history_topics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
        if self.history_bytes > self.history_total_bytes:
            raise ConfigurationError(
                f"history_bytes ({self.history_bytes}) must not exceed "
                f"history_total_bytes ({self.history_total_bytes})"
            )

    @classmethod
    def of(cls, settings: object) -> HistoryBudget:
        """Return the budget named by the attributes of ``settings`` (a
        :class:`~ssehub.hub.HubSettings`) that have the names of this class's fields.

        Raises:
            ConfigurationError: a bound is out of range.
        """
        return cls(
            getattr(settings, "max_event_size", DEFAULT_MAX_EVENT_SIZE),
            getattr(settings, "history_bytes", DEFAULT_HISTORY_BYTES),
            getattr(settings, "history_total_bytes", DEFAULT_HISTORY_TOTAL_BYTES),
            getattr(settings, "history_topics", DEFAULT_HISTORY_TOPICS),
        )

    def check_event(self, event: ServerSentEvent) -> None:
        """Refuse an event (still without id) larger than :attr:`max_event_size`.

        Raises:
            EventTooLarge: its encoded size is over the limit (``limit`` is the limit).
        """
        if len(event.encode()) > self.max_event_size:
            raise EventTooLarge(self.max_event_size)


class _Entry:
    """One retained event, its cost, and how many topic logs still hold it."""

    __slots__ = ("cost", "event", "position", "refs")

    def __init__(self, event: StoredEvent, cost: int) -> None:
        self.event: StoredEvent | None = event  # None once released: nothing pins the event
        self.position = event.position
        self.cost = cost
        self.refs = len(event.topics)


def _position(item: StoredEvent | _Entry) -> Position:
    return item.position


class TopicLog:
    """The retained events of one topic, oldest first, and their cost in bytes."""

    __slots__ = ("_head", "_items", "bytes", "evicted_upto")

    def __init__(self) -> None:
        # Slots before _head are evicted and hold None, so evicted events are not pinned.
        self._items: list[_Entry | None] = []
        self._head = 0
        self.bytes = 0
        """The summed cost of the retained events."""
        self.evicted_upto: Position = ()
        """The position of the newest evicted event, or ``()`` when nothing was evicted."""

    def __len__(self) -> int:
        return len(self._items) - self._head

    def append(self, entry: _Entry) -> None:
        """Add the newest entry (positions must increase)."""
        self._items.append(entry)
        self.bytes += entry.cost

    def oldest(self) -> _Entry | None:
        """Return the oldest retained entry, or ``None`` when empty."""
        return self._items[self._head] if self._head < len(self._items) else None

    def evict_oldest(self) -> _Entry:
        """Forget the oldest retained entry and return it (the log must not be empty)."""
        items = self._items
        entry = items[self._head]
        assert entry is not None
        items[self._head] = None
        self.evicted_upto = entry.position
        self.bytes -= entry.cost
        self._head += 1
        if self._head >= _COMPACT_AT and self._head * 2 >= len(items):
            del items[: self._head]
            self._head = 0
        return entry

    def entries(self) -> list[_Entry]:
        """Return the retained entries, oldest first."""
        return self._items[self._head :]  # type: ignore[return-value]  # no None past _head

    def after(self, position: Position) -> list[StoredEvent]:
        """Return the retained events whose position is greater than ``position``, in order."""
        items = self._items
        start = bisect_right(items, position, lo=self._head, key=_position)  # type: ignore[arg-type]
        return [entry.event for entry in items[start:]]  # type: ignore[union-attr,misc]


class HistoryPool:
    """A byte budget shared by several histories (a registry's channels, each with its own).

    When the histories together hold more than ``limit`` bytes, the oldest event among all of
    them goes first (by timestamp, so their clocks must agree), as within one history. Finding
    it costs O(histories) per eviction. A history's bytes stay counted until it releases its
    events: clear it (:meth:`History.forget` of all its topics) before dropping it.

    Args:
        limit: bytes the histories may hold together (``>= 1``).

    Attributes:
        bytes: what they hold now.

    Raises:
        ConfigurationError: ``limit`` is not an int >= 1.
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"the pool's limit must be an int >= 1, not {limit!r}")
        self.limit = limit
        self.bytes = 0
        self._members: weakref.WeakSet[History] = weakref.WeakSet()

    def _settle(self) -> None:
        while self.bytes > self.limit:
            oldest: History | None = None
            oldest_time = 0.0
            for member in self._members:
                first = member._order[0].event if member._order else None
                if first is not None and (oldest is None or first.timestamp < oldest_time):
                    oldest, oldest_time = member, first.timestamp
            if oldest is None:  # pragma: no cover - bytes > 0 means a member holds an event
                return
            oldest._evict_first()


class History:
    """Histories of all topics, bounded by count and age per topic and by a byte budget.

    Args:
        max_size: events kept per topic (at least 1).
        max_age: seconds an event is kept, measured on the caller's clock (``> 0``).
        budget: the byte and topic bounds (:class:`HistoryBudget`'s defaults when ``None``).
        pool: a byte budget shared with other histories, kept on top of ``budget``.

    Attributes:
        bytes: the cost of every retained event (:func:`event_cost`), each counted once.
    """

    def __init__(
        self,
        max_size: int,
        max_age: float,
        budget: HistoryBudget | None = None,
        pool: HistoryPool | None = None,
    ) -> None:
        self.max_size = max_size
        self.max_age = max_age
        self.budget = budget if budget is not None else HistoryBudget()
        self._pool = pool
        if pool is not None:
            pool._members.add(self)
        # Least recently published first: the topic that goes when there are too many.
        self._logs: OrderedDict[str, TopicLog] = OrderedDict()
        # Every retained entry in position order (oldest first), for eviction by age and by
        # total bytes across topics; released entries are skipped and periodically dropped.
        self._order: deque[_Entry] = deque()
        self._dead = 0
        self.bytes = 0
        # Logs that became empty are deleted; the newest position they had evicted is folded in
        # here, so an id older than it is still recognised as expired for a topic without a log
        # (conservative: it may have been that topic's events that went).
        self._forgotten: Position = ()

    def append(self, event: StoredEvent) -> None:
        """Store ``event`` in the log of each of its topics, then evict to stay in bounds."""
        budget = self.budget
        logs = self._logs
        cost = event_cost(event)
        entry = _Entry(event, cost)
        self._order.append(entry)
        self.bytes += cost
        pool = self._pool
        if pool is not None:
            pool.bytes += cost
        max_size, limit = self.max_size, budget.history_bytes
        for topic in event.topics:
            log = logs.get(topic)
            if log is None:
                while len(logs) >= budget.history_topics:
                    self._drop(next(iter(logs)))
                log = logs[topic] = TopicLog()
                # The topic may have had a log that was deleted: inherit the bound so an id
                # older than what that log evicted is still not resumed as if complete.
                log.evicted_upto = self._forgotten
            else:
                logs.move_to_end(topic)
            # TopicLog.append inlined: this runs for every topic of every event.
            items = log._items
            items.append(entry)
            log.bytes += cost
            if len(items) - log._head > max_size or log.bytes > limit:
                self._trim(log, max_size, limit)
        if self.bytes > budget.history_total_bytes:
            # The newest event stays even alone over the total (as a topic keeps its newest
            # over its own bound): evicted as it is stored, its idempotency key would go with
            # it, and a retry would store it again.
            order = self._order
            while self.bytes > budget.history_total_bytes and order[0] is not entry:
                self._evict_first()
        if pool is not None:
            pool._settle()

    def _trim(self, log: TopicLog, max_size: int, limit: int) -> None:
        """Evict the oldest events of ``log`` to its count and byte bounds (keeping one)."""
        items = log._items  # compacted in place: the same list throughout
        count = len(items) - log._head
        while count > max_size or (log.bytes > limit and count > 1):
            self._release(log.evict_oldest())
            count -= 1

    def _release(self, entry: _Entry) -> None:
        """One log let go of ``entry``; free it when it was the last."""
        entry.refs -= 1
        if entry.refs:
            return
        entry.event = None
        self.bytes -= entry.cost
        if self._pool is not None:
            self._pool.bytes -= entry.cost
        self._dead += 1
        order = self._order
        while order and not order[0].refs:
            order.popleft()
            self._dead -= 1
        if self._dead > _DEAD_SLACK and self._dead * 2 > len(order):
            self._order = deque(item for item in order if item.refs)
            self._dead = 0

    def _evict_first(self) -> None:
        """Evict the oldest retained event from every log that holds it."""
        entry = self._order[0]  # _release keeps released entries off the front
        event = entry.event
        assert event is not None
        for topic in event.topics:
            log = self._logs.get(topic)
            if log is not None and log.oldest() is entry:
                self._release(log.evict_oldest())
                if not log:
                    self._forget_log(topic, log)

    def _forget_log(self, topic: str, log: TopicLog) -> None:
        self._forgotten = max(self._forgotten, log.evicted_upto)
        del self._logs[topic]

    def _drop(self, topic: str) -> None:
        """Evict every event of ``topic`` and delete its log; its resumes become expired."""
        log = self._logs[topic]
        while log:
            self._release(log.evict_oldest())
        self._forget_log(topic, log)

    def expire(self, now: float, topics: Iterable[str] | None = None) -> None:
        """Evict events older than ``max_age`` (from every topic: ``topics`` is not needed).

        Events are in time order, so this costs O(1) per evicted event and nothing when none is
        due. Empty logs are deleted so topics that are no longer used cost nothing.
        """
        cutoff = now - self.max_age
        while self._order:  # re-read: eviction may rebuild the deque
            event = self._order[0].event
            assert event is not None  # _release keeps released entries off the front
            if event.timestamp > cutoff:
                break
            self._evict_first()

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
            log = logs.pop(topic, None)
            if log is not None:
                for entry in log.entries():
                    self._release(entry)

    def size(self, topic: str) -> int:
        """Return how many events ``topic`` retains."""
        log = self._logs.get(topic)
        return 0 if log is None else len(log)

    def topic_bytes(self, topic: str) -> int:
        """Return the cost of the events ``topic`` retains (an event under several topics
        counts in each)."""
        log = self._logs.get(topic)
        return 0 if log is None else log.bytes

    def topics(self) -> list[str]:
        """Return the topics that retain at least one event."""
        return list(self._logs)

    @property
    def forgotten(self) -> Position:
        """The newest position evicted with a whole topic's log (``()`` if none): an id before
        it may have been followed by an event of a topic no longer listed."""
        return self._forgotten
