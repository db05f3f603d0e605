"""The in-process backend: a counter for ids and a bounded :class:`~ssehub.broker.history.History`.

Ids are ``"<epoch>-<sequence>"``: ``epoch`` is random per backend instance, so an id from a
previous process (or from another broker) is *unknown* rather than silently compared, and the
sequence counts every event of this instance, across all topics, from 1.

Idempotency keys are remembered as long as their event is in history
(:mod:`ssehub.backends._idempotency`), so they are bounded with it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, IdempotencyKeyReused
from ..broker.events import ResetReason, StoredEvent
from ..broker.history import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    History,
    HistoryBudget,
    HistoryPool,
)
from ..broker.ids import new_epoch
from ..broker.publication import publication_fingerprint
from ._idempotency import KeyLog, Remembered
from .base import EventSink, PendingEvent, Replay

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..broker.patterns import TopicMatcher

__all__ = ["DEFAULT_HISTORY_SIZE", "DEFAULT_HISTORY_TTL", "MemoryBackend"]

_SWEEP_INTERVAL: Final = 1.0  # seconds between age sweeps of every topic (touched ones: always)


class MemoryBackend:
    """A :class:`~ssehub.backends.Backend` that lives in this process.

    Args:
        history_size: events kept per topic (at least 1).
        history_ttl: seconds an event is kept (``> 0``), measured on the broker's clock.
        budget: the largest event and the byte and topic bounds of the history
            (:class:`~ssehub.broker.history.HistoryBudget`; its defaults when ``None``).
        pool: a byte budget shared with other memory backends (a registry's channels), on top
            of ``budget``; clear the history (:meth:`forget_now` of every topic) when done.
        epoch: the id prefix; random by default (tests may fix it). 1-16 characters of
            ``[A-Za-z0-9]``.

    Raises:
        ConfigurationError: a bound or the epoch is invalid.
    """

    def __init__(
        self,
        *,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        budget: HistoryBudget | None = None,
        pool: HistoryPool | None = None,
        epoch: str | None = None,
    ) -> None:
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ConfigurationError("history_size must be an int >= 1")
        if isinstance(history_ttl, bool) or not isinstance(history_ttl, (int, float)):
            raise ConfigurationError("history_ttl must be a number of seconds")
        if not history_ttl > 0:
            raise ConfigurationError("history_ttl must be > 0")
        if epoch is None:
            epoch = new_epoch()
        elif not (0 < len(epoch) <= 16 and epoch.isascii() and epoch.isalnum()):
            raise ConfigurationError("epoch must be 1-16 ASCII letters or digits")
        self.epoch = epoch
        self._prefix = epoch + "-"
        self._history = History(history_size, float(history_ttl), budget, pool)
        self._keys = KeyLog(self._history.size)
        self._sequence = 0
        self._sink: EventSink | None = None
        self._clock: Clock = SystemClock()
        self._last_sweep = float("-inf")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        history_size: int,
        history_ttl: float,
        budget: HistoryBudget | None = None,
    ) -> MemoryBackend:
        """Create from ``memory://`` (the URL carries no options).

        Raises:
            ConfigurationError: the URL has a host, path or query.
        """
        if url.rstrip("/") != "memory:":
            raise ConfigurationError("the memory backend URL takes no options: use memory://")
        return cls(history_size=history_size, history_ttl=history_ttl, budget=budget)

    @property
    def history_size(self) -> int:
        """Events kept per topic."""
        return self._history.max_size

    @property
    def history_ttl(self) -> float:
        """Seconds an event is kept."""
        return self._history.max_age

    @property
    def budget(self) -> HistoryBudget:
        """The largest event and the byte and topic bounds of the history."""
        return self._history.budget

    @property
    def history_bytes(self) -> int:
        """The memory the retained events take, in bytes, each event once
        (:func:`~ssehub.broker.history.event_cost`)."""
        return self._history.bytes

    @property
    def last_id(self) -> str:
        """The id of the newest event stored, or ``"<epoch>-0"`` before the first.

        Both forms are ids of this instance (:meth:`parse_id` accepts them), so resuming after
        ``last_id`` replays exactly what is published from now on: a channel listener records
        it when it joins, as the point before which it may replay nothing.
        """
        return self._prefix + str(self._sequence)

    async def start(self, *, sink: EventSink, clock: Clock, task_group: TaskGroup) -> None:
        """Remember the sink and the clock; the memory backend needs no background task."""
        self._sink = sink
        self._clock = clock

    async def aclose(self) -> None:
        """Detach from the broker; the history stays readable for inspection."""
        self._sink = None

    async def publish(
        self,
        batch: Sequence[PendingEvent],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[StoredEvent]:
        """Number, store and fan out ``batch`` synchronously (it cannot fail halfway).

        An item whose idempotency key names an event still in history is that event (not
        stored or fanned out again); see :meth:`ssehub.backends.Backend.publish`.

        Raises:
            IdempotencyKeyReused: a key comes with a different publication; nothing is stored.
            EventTooLarge: an event is larger than ``budget.max_event_size``; nothing is stored.
        """
        history = self._history
        self._check_sizes(batch)
        now = self._clock.time()
        if now - self._last_sweep >= _SWEEP_INTERVAL:
            self._last_sweep = now
            history.expire(now)
            self._keys.prune()
        if idempotency_keys is not None:
            return self._publish_keyed(batch, idempotency_keys, now)
        return [self._store(pending, now) for pending in batch]

    async def publish_transient(self, batch: Sequence[PendingEvent]) -> list[StoredEvent]:
        """Number and fan out ``batch`` without keeping it in history (see
        :func:`ssehub.backends.base.publish_transient`).

        Raises:
            EventTooLarge: an event is larger than ``budget.max_event_size``; nothing is sent.
        """
        self._check_sizes(batch)
        now = self._clock.time()
        delivered: list[StoredEvent] = []
        for pending in batch:
            item = self._number(pending, now)
            if self._sink is not None:
                self._sink(item)
            delivered.append(item)
        return delivered

    def _check_sizes(self, batch: Sequence[PendingEvent]) -> None:
        check = self._history.budget.check_event
        for _, event, _ in batch:
            check(event)

    def _number(self, pending: PendingEvent, now: float) -> StoredEvent:
        """``pending`` with the next id (and position) of this backend."""
        topics, event, private = pending
        self._sequence += 1
        event_id = self._prefix + str(self._sequence)
        # An id already set was chosen by the publisher (ssehub.broker.chosen_ids): kept on
        # the wire, while event_id keeps the event's place in history.
        wire = event if event.id is not None else event.replace(id=event_id)
        return StoredEvent(event_id, topics, wire, now, (self._sequence,), private)

    def _store(
        self, pending: PendingEvent, now: float, key: str | None = None, fingerprint: str = ""
    ) -> StoredEvent:
        topics = pending[0]
        history = self._history
        history.expire(now, topics)
        item = self._number(pending, now)
        history.append(item)
        keys = self._keys
        keys.appended(item, key, fingerprint)
        if len(keys):
            keys.prune(topics)  # appending may have evicted keyed events of these topics
        sink = self._sink
        if sink is not None:
            sink(item)
        return item

    def _publish_keyed(
        self, batch: Sequence[PendingEvent], keys: Sequence[str | None], now: float
    ) -> list[StoredEvent]:
        # Every key is checked before anything is stored, so a conflict stores nothing.
        plan: list[StoredEvent | int | None] = []  # the event, an earlier item's index, or new
        fingerprints: list[str] = []
        firsts: dict[str, tuple[str, StoredEvent | int]] = {}
        for index, (pending, key) in enumerate(zip(batch, keys, strict=True)):
            if key is None:
                plan.append(None)
                fingerprints.append("")
                continue
            fingerprint = publication_fingerprint(pending)
            fingerprints.append(fingerprint)
            first = firsts.get(key)
            step: StoredEvent | int | None
            if first is None:
                remembered = self._remembered(key, now)
                if remembered is None:
                    first, step = (fingerprint, index), None
                else:
                    first = (remembered.fingerprint, remembered.event)
                    step = remembered.event
                firsts[key] = first
            else:
                step = first[1]  # the same key earlier in this batch
            if first[0] != fingerprint:
                raise IdempotencyKeyReused(
                    "this idempotency key names a different publication; nothing was published"
                )
            plan.append(step)
        stored: list[StoredEvent] = []
        for index, step in enumerate(plan):
            if step is None:
                stored.append(self._store(batch[index], now, keys[index], fingerprints[index]))
            elif isinstance(step, int):
                stored.append(stored[step])
            else:
                stored.append(step)
        return stored

    def _remembered(self, key: str, now: float) -> Remembered | None:
        """What ``key`` names, if its event is still in the history of one of its topics."""
        keys = self._keys
        remembered = keys.peek(key)
        if remembered is None:
            return None
        topics = remembered.event.topics
        self._history.expire(now, topics)
        keys.prune(topics)
        return keys.peek(key)

    def parse_id(self, event_id: str) -> int | None:
        """Return the sequence number of one of this instance's ids, else ``None``."""
        if not event_id.startswith(self._prefix):
            return None
        digits = event_id[len(self._prefix) :]
        if not (digits.isdigit() and digits.isascii()) or (digits[0] == "0" and digits != "0"):
            return None
        sequence = int(digits)
        return sequence if sequence <= self._sequence else None

    async def replay(self, topics: Collection[str], last_event_id: str) -> Replay:
        """Return the retained events after ``last_event_id`` (O(log n) per topic)."""
        sequence = self.parse_id(last_event_id)
        if sequence is None:
            return Replay(reset=ResetReason.UNKNOWN)
        self._history.expire(self._clock.time(), topics)
        position = (sequence,)
        events = self._history.after(topics, position)
        if events is None:
            return Replay(reset=ResetReason.EXPIRED)
        return Replay(events=events, position=position)

    async def replay_matching(
        self, topics: Collection[str], matchers: Sequence[TopicMatcher], last_event_id: str
    ) -> Replay:
        """Return the retained events after ``last_event_id`` on ``topics`` and on every topic
        with history that one of ``matchers`` matches (see
        :func:`ssehub.backends.replay_matching`).

        Listing and reading happen in one synchronous step, so the answer is exact as of this
        call. Cost: one match per topic with history and matcher (at most ``history_topics``
        topics), then O(log n) per topic replayed.
        """
        sequence = self.parse_id(last_event_id)
        if sequence is None:
            return Replay(reset=ResetReason.UNKNOWN)
        history = self._history
        history.expire(self._clock.time())
        position = (sequence,)
        if history.forgotten > position:  # a removed topic's events may have matched
            return Replay(reset=ResetReason.EXPIRED)
        names = dict.fromkeys(topics)
        for name in history.topics():
            if name not in names and any(matcher.matches(name) for matcher in matchers):
                names[name] = None
        events = history.after(names, position)
        if events is None:
            return Replay(reset=ResetReason.EXPIRED)
        return Replay(events=events, position=position)

    async def history_sizes(self, topics: Collection[str] | None = None) -> dict[str, int]:
        """Return retained event counts (after evicting by age)."""
        self._history.expire(self._clock.time(), topics)
        names = self._history.topics() if topics is None else topics
        return {topic: self._history.size(topic) for topic in names}

    async def history_usage(
        self, topics: Collection[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """Return the events and the bytes each topic retains (after evicting by age); an
        event under several topics counts in each."""
        history = self._history
        history.expire(self._clock.time())
        names = history.topics() if topics is None else topics
        return {topic: (history.size(topic), history.topic_bytes(topic)) for topic in names}

    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 - silence is False
        """Return ``True``: the history lives in this process, so it always answers."""
        return True

    async def forget(self, topics: Collection[str]) -> None:
        """Drop the history of ``topics`` (see :meth:`forget_now`)."""
        self.forget_now(topics)

    def forget_now(self, topics: Collection[str]) -> None:
        """:meth:`forget` without awaiting: in memory it is one dict removal per topic.

        A channel removes a listener synchronously (from a stream's close, a timer) and must
        release its private history at that moment, not in a task scheduled for later.
        """
        self._history.forget(topics)
        self._keys.prune(topics)
