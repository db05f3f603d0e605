"""The storage backend contract: assign ids, keep history, replay, and feed local fan-out.

The :class:`~ssehub.Broker` owns the subscriptions and fans events out locally; a backend owns
ids and history. Every event the broker's subscribers should see, whether published through this
broker or (for a shared backend such as Redis) by another process, reaches the broker through
one callback, the *sink*, in position order. The in-memory backend calls the sink inside
:meth:`Backend.publish`; a Redis backend calls it from a reader task that it starts in the task
group handed to :meth:`Backend.start`.

A subscription with patterns resumes through the optional ``replay_matching`` method (see
:func:`replay_matching`): the backend lists the topics it has history for and reads the replay of
those a pattern matches, consistently with the live events the broker has queued.

Ids are opaque to the broker: it only compares :attr:`StoredEvent.position` values, which the
backend derives from its ids (memory ``"<epoch>-<seq>"`` -> ``(seq,)``; Redis ``"<ms>-<seq>"`` ->
``(ms, seq)``). Ids must match :func:`ssehub.broker.ids.is_valid_event_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._clock import Clock
    from ..broker.events import Position, ResetReason, StoredEvent
    from ..broker.patterns import TopicMatcher
    from ..wire import ServerSentEvent

__all__ = [
    "Backend",
    "EventSink",
    "PendingEvent",
    "Replay",
    "history_bytes",
    "history_usage",
    "publish_transient",
    "replay_matching",
]

EventSink = Callable[["StoredEvent"], None]
"""Called on the event loop thread with each stored event, in position order; must not block."""

PendingEvent = tuple[tuple[str, ...], "ServerSentEvent", bool]
"""A validated event waiting for an id: its (normalised) topics, the event without ``id``, and
whether it is private (stored with the event, so replay can keep it from unauthorized readers)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to a resume request.

    Attributes:
        events: retained events after the requested id on the requested topics, each once, in
            position order (empty on reset).
        reset: why the id cannot be resumed exactly, or ``None`` when ``events`` is complete.
        position: the position of the requested id (``None`` on reset). Together with the last
            replayed event it tells the broker which buffered live events are duplicates.
    """

    events: Sequence[StoredEvent] = field(default=())
    reset: ResetReason | None = None
    position: Position | None = None


@runtime_checkable
class Backend(Protocol):
    """Where events get their ids and live in history. Implementations: memory, Redis.

    A backend instance serves one broker at a time. History bounds (count per topic, age, and
    the byte and topic bounds of a :class:`~ssehub.broker.history.HistoryBudget`) are options
    of the backend's constructor; :func:`ssehub.backends.create_backend` passes the broker's
    ``history_size``/``history_ttl``/``budget`` through.

    Four members are optional, read with :func:`history_bytes`, :func:`history_usage` (0
    bytes without them), :func:`replay_matching` and :func:`publish_transient`:
    ``history_bytes``, an int attribute (the bytes history holds now, or as last seen for a
    shared store), ``async history_usage(topics=None)``, like :meth:`history_sizes` with
    ``(events, bytes)`` per topic, ``async replay_matching(topics, matchers, last_event_id) ->
    Replay`` (pattern resume, described at :func:`replay_matching`) and ``async
    publish_transient(batch) -> list[StoredEvent]`` (described at :func:`publish_transient`).
    They are not members of this protocol, so a backend written before them is still a
    :class:`Backend`.
    """

    async def start(self, *, sink: EventSink, clock: Clock, task_group: TaskGroup) -> None:
        """Connect and start background work (for example a stream reader) in ``task_group``.

        Args:
            sink: deliver every event for local subscribers here, in position order.
            clock: the broker's clock; history age is measured on it.
            task_group: the broker's task group; it is cancelled when the broker exits.

        Raises:
            BackendUnavailable: the storage cannot be reached.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the broker exits, after the task group ended."""
        ...

    async def publish(
        self,
        batch: Sequence[PendingEvent],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[StoredEvent]:
        """Assign ids to ``batch`` (in order), store all of it or none of it, return the result.

        The returned events must also reach the sink (before this returns, or soon after from a
        reader task), exactly once each.

        ``idempotency_keys`` (one per item, ``None`` for an item without a key; the broker
        passes it only when some item has a key, already validated) makes retries safe: an item
        whose key names a publication the backend still remembers (at least while its event is
        in history) is not stored again; its place in the result is that first event, and it
        does not reach the sink again. Two items of one batch with one key are one publication.
        Checking and storing are one atomic step, so concurrent publishes with one key store
        one event. A key that comes with a different publication (see
        :func:`ssehub.broker.publication.publication_fingerprint`) fails the whole batch.

        Raises:
            BackendUnavailable: the storage cannot be reached or refused the write; nothing
                was published.
            PublishOutcomeUnknown: the command was sent but not answered (a timeout): the batch
                may or may not be stored; a retry with the same keys is safe.
            IdempotencyKeyReused: a key comes with a different publication; nothing was
                published.
        """
        ...

    async def replay(self, topics: Collection[str], last_event_id: str) -> Replay:
        """Return what follows ``last_event_id`` on ``topics``, or why that cannot be done.

        ``last_event_id`` is already known to be well-formed (see ``ids.is_valid_event_id``);
        ids of another backend, epoch or process lifetime give ``ResetReason.UNKNOWN``, ids
        whose successors were evicted give ``ResetReason.EXPIRED``. Cost is bounded by the
        history size, never by a scan of everything stored.

        Raises:
            BackendUnavailable: the storage cannot be reached.
        """
        ...

    async def history_sizes(self, topics: Collection[str] | None = None) -> dict[str, int]:
        """Return how many events each topic retains (all known topics when ``topics`` is None).

        Raises:
            BackendUnavailable: the storage cannot be reached.
        """
        ...

    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 - silence is False
        """Return whether the storage answers within ``timeout`` seconds (a health check).

        Cheap, and changes no data (Redis: one ``PING``); the hub's ``/health`` and ``/readyz``
        call it at most once per second whatever their traffic. Must return within about
        ``timeout`` seconds and must not raise for the storage being away: that is ``False``.
        A backend in this process (memory) always answers ``True``.
        """
        ...

    async def forget(self, topics: Collection[str]) -> None:
        """Drop the history of ``topics`` now: their retained events and their bookkeeping.

        For topics nobody may replay any more (a removed channel listener's private topic), so
        that they cost nothing until their events would have aged out. A later resume of a
        forgotten topic after an older id returns what was published to it since (nothing
        before), not a reset; other topics are unaffected. Unknown topics are ignored.

        Raises:
            BackendUnavailable: the storage cannot be reached.
        """
        ...


def history_bytes(backend: Backend) -> int:
    """Return the bytes ``backend``'s history holds (its ``history_bytes``; 0 without one)."""
    value = getattr(backend, "history_bytes", 0)
    return value if isinstance(value, int) else 0


async def history_usage(
    backend: Backend, topics: Collection[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Return ``(events, bytes)`` per topic from ``backend`` (bytes 0 if it cannot tell).

    Raises:
        BackendUnavailable: the storage cannot be reached.
    """
    usage = getattr(backend, "history_usage", None)
    if usage is not None:
        result: dict[str, tuple[int, int]] = await usage(topics)
        return result
    return {name: (size, 0) for name, size in (await backend.history_sizes(topics)).items()}


async def publish_transient(backend: Backend, batch: Sequence[PendingEvent]) -> list[StoredEvent]:
    """Deliver ``batch`` to every subscriber without keeping it in history.

    Calls the backend's optional ``publish_transient(batch)``: the events get ids in the same
    order as stored ones and reach the sink of every process sharing the store, but no topic
    history holds them, so they are never replayed and take no place in the history's bounds
    (a resume on their topics is answered like one on a topic without history). A backend
    without the method stores them, as :meth:`Backend.publish` does.

    Raises:
        BackendUnavailable, PublishOutcomeUnknown, EventTooLarge: as :meth:`Backend.publish`.
    """
    method = getattr(backend, "publish_transient", None)
    if method is None:
        return await backend.publish(batch)
    stored: list[StoredEvent] = await method(batch)
    return stored


async def replay_matching(
    backend: Backend,
    topics: Collection[str],
    matchers: Sequence[TopicMatcher],
    last_event_id: str,
) -> Replay:
    """Return what follows ``last_event_id`` on ``topics`` and on every topic a matcher matches.

    Calls the backend's optional ``replay_matching(topics, matchers, last_event_id)``. Its
    contract, on top of :meth:`Backend.replay`'s (events in order, each once; resets): the
    broker registered the subscription (live events are queued from then on) before calling it,
    and the answer must hand over to that queue with no gap. Every retained event after the id
    on a topic a matcher matches must be in it, up to some position ``L`` at least as recent as
    the call, and none after ``L`` (those are in the queue). A backend that lists topics and
    reads them at one instant (memory) meets it at once; one that cannot (Redis) reads the list
    of topics with history together with the newest position ``L`` atomically, then reads the
    replay of the matched topics and drops what is after ``L``: every event up to ``L`` had its
    topic listed, and every event after ``L`` was published after the subscription registered.
    An id older than a topic whose history was removed entirely (aged out, or over the topic
    budget) may have been followed by that topic's events, which a matcher may have matched:
    such an id is ``expired``.

    A backend without the method cannot resume a pattern subscription exactly: the answer is
    an ``unknown`` reset (the subscription continues live), never a replay with a gap.

    Raises:
        BackendUnavailable: the storage cannot be reached.
    """
    method = getattr(backend, "replay_matching", None)
    if method is None:
        # Imported here: the broker package imports this module while it initialises.
        from ..broker.events import ResetReason

        return Replay(reset=ResetReason.UNKNOWN)
    replay: Replay = await method(topics, matchers, last_event_id)
    return replay
