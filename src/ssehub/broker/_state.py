"""What the broker holds of a subscription: its queue, overflow policy, resume handover, counters.

A :class:`~ssehub.broker.Subscription` is a handle on one :class:`SubscriptionState`. The broker
(its registry, the fan-out, the connection-age reaper) references only the state, and the state
never references its handle back: it is a weak reference to it. So a subscription nobody can
read any more (its handle dropped without ``close()``) is garbage collected, and the weak
reference's callback (the broker's :class:`~ssehub.broker._release.Releaser`) has the broker end
the state with :attr:`EndReason.ABANDONED`.

The publish path calls :meth:`SubscriptionState._push` once per subscriber: an append to a
deque, a length check, and one readiness callback if the consumer waits. No encoding (the frame
bytes are cached on the event) and no task switch per subscriber.

The consumer side is pull-only: :meth:`SubscriptionState.receive_nowait` takes what is pending
and :meth:`SubscriptionState.on_ready` registers a one-shot callback for when more arrives. The
handle's async iterator, ``receive()`` and its frame source are built on those two. Private
events a reader may not see are filtered once, as they are queued.

Resume (``Last-Event-ID``) uses the handover Mercure calls the *live queue*: the subscription is
registered for live events first (so they buffer in the queue), then the replay is fetched from
the backend, then the consumer gets the replay followed by the buffered live events whose
position is after the last replayed one. Nothing published while the replay is being fetched
can be missed or delivered twice, even with an asynchronous backend.

Every method runs on the broker's event loop thread; only the weak reference's callback may run
elsewhere, and it only queues the state for the loop (see ``_release.py``).
"""

from __future__ import annotations

import enum
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .events import Dropped, Position, Reset, ResetReason, StoredEvent
from .policy import OverflowPolicy
from .stats import SubscriptionStatistics

if TYPE_CHECKING:
    from .._frames import ReadyCallback
    from .broker import Broker
    from .patterns import TopicMatcher
    from .subscription import Subscription

__all__ = ["EndReason", "Item", "SubscriptionState"]

Item = StoredEvent | Reset | Dropped
"""What a subscription yields: events, and the broker's notices."""


class EndReason(str, enum.Enum):
    """Why a subscription ended."""

    CLOSED = "closed"
    """The consumer closed it."""
    BROKER_CLOSED = "broker_closed"
    """The broker shut down."""
    SHED = "shed"
    """The ``disconnect`` overflow policy ended it: the consumer fell behind."""
    MAX_AGE = "max_age"
    """It reached the broker's ``max_connection_age`` (clients reconnect and resume)."""
    ABANDONED = "abandoned"
    """Nothing referenced the :class:`~ssehub.broker.Subscription` any more (for example the
    generator iterating it was closed with its response), so it was garbage collected without
    being closed; the broker released it."""


class SubscriptionState(weakref.ref["Subscription"]):
    """One subscription as the broker sees it; a weak reference to its handle.

    Being the weak reference itself costs no object beyond the handle per subscription.
    Calling it returns the handle, or ``None`` once that was garbage collected. Hashing and
    equality are by identity (a state has one handle, and its hash must not depend on the handle
    being alive).
    """

    __slots__ = (
        "_broker",
        "_buffer",
        "_delivered",
        "_dropped",
        "_dropped_pending",
        "_end_reason",
        "_floor",
        "_maxsize",
        "_peak",
        "_policy",
        "_queue",
        "_ready",
        "_replay",
        "_reset",
        "_reset_pending",
        "_resume_id",
        "_space",
        "_visible",
        "deadline",
        "patterns",
        "topics",
    )

    __hash__ = object.__hash__

    def __new__(
        cls, handle: Subscription, broker: Broker, *args: object, **kwargs: object
    ) -> SubscriptionState:
        # weakref.ref.__new__ takes only the referent and the callback.
        return super().__new__(cls, handle, broker._releaser)

    def __init__(
        self,
        handle: Subscription,
        broker: Broker,
        topics: tuple[str, ...],
        patterns: tuple[TopicMatcher, ...] = (),
        *,
        maxsize: int,
        policy: OverflowPolicy,
        resume_id: str | None,
        reset: ResetReason | None,
        visible: Callable[[StoredEvent], bool] | None = None,
    ) -> None:
        # The referent and the callback were set by __new__ (weakref's __init__ only checks
        # its arguments).
        self._broker = broker
        self.topics = topics
        self.patterns = patterns
        self._maxsize = maxsize
        self._policy = policy
        # Created on the first event: an idle subscriber never needs one, and an empty deque
        # costs over 600 bytes.
        self._queue: deque[StoredEvent] | None = None
        self._ready: ReadyCallback | None = None
        self._space: anyio.Event | None = None
        self._end_reason: EndReason | None = None
        self._resume_id = resume_id  # not None while the replay is still to be fetched
        self._reset = reset
        self._reset_pending = reset is not None
        self._replay: Sequence[StoredEvent] = ()
        self._floor: Position | None = None  # live events at or below it were replayed
        self._dropped_pending = 0
        # Private events for which it returns false are never queued, replayed or counted.
        self._visible = visible
        # Only ``async for`` consumers need it; the response's fast path never does, and an
        # empty deque costs several hundred bytes per idle stream.
        self._buffer: deque[Item] | None = None
        self._peak = 0
        self._dropped = 0
        self._delivered = 0
        self.deadline: float | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def _queued(self) -> int:
        return len(self._queue) if self._queue else 0

    def statistics(self) -> SubscriptionStatistics:
        """Return ``(queued, peak, dropped, delivered)``."""
        return SubscriptionStatistics(self._queued, self._peak, self._dropped, self._delivered)

    # -- publish side (called by the broker on the event loop thread) --------------------------

    def _push(self, event: StoredEvent) -> bool:
        """Queue ``event``; return ``False`` when the ``disconnect`` policy must shed us."""
        if self._floor is not None:
            # A backend whose sink lags (a Redis reader) may deliver, after the handover,
            # events that were already replayed. The sink is in order, so the first newer
            # event ends the check.
            if event.position <= self._floor:
                return True
            self._floor = None
        if event.private:
            visible = self._visible
            if visible is not None and not visible(event):
                return True  # never this reader's: not queued, not counted
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._maxsize:
            policy = self._policy
            if policy is OverflowPolicy.DISCONNECT:
                return False
            if policy is OverflowPolicy.DROP_OLDEST:
                queue.popleft()
                self._dropped += 1
                self._dropped_pending += 1
                self._broker._dropped += 1
            # BLOCK: publish waited for room, but concurrent publishers (or a remote backend)
            # may still overshoot; the bound is soft rather than lose an event.
        queue.append(event)
        self._peak = max(self._peak, len(queue))
        ready = self._ready
        if ready is not None:
            self._ready = None
            ready()
        return True

    def _has_room(self) -> bool:
        return self._queued < self._maxsize or self._end_reason is not None

    async def _wait_for_room(self) -> None:
        space = self._space
        if space is None:
            space = self._space = anyio.Event()
        await space.wait()

    def _end(self, reason: EndReason) -> None:
        """End the subscription and unregister it; idempotent."""
        if self._end_reason is not None:
            return
        self._end_reason = reason
        if reason is EndReason.SHED or self._resume_id is not None:
            # Shed: free the memory now; the client resumes from history. An unfinished
            # resume cannot be delivered without its replay, so it is discarded too.
            discarded = self._queued
            self._queue = None
            self._dropped += discarded
            self._broker._dropped += discarded
            self._resume_id = None
            self._reset_pending = False
            self._dropped_pending = 0
        self._wake()
        self._broker._unregister(self)

    def _wake(self) -> None:
        ready = self._ready
        if ready is not None:
            self._ready = None
            ready()
        if self._space is not None:
            self._space.set()
            self._space = None

    # -- consumer side (the handle's methods call these) ---------------------------------------

    async def prepare(self) -> None:
        """Fetch the replay now (see :meth:`Subscription.prepare`)."""
        resume_id = self._resume_id
        if resume_id is None:
            return
        replay = await self._broker._backend_replay(self.topics, self.patterns, resume_id)
        if self._resume_id is None:  # ended meanwhile (or a concurrent prepare finished)
            return
        self._resume_id = None
        if replay.reset is not None:
            self._reset = replay.reset
            self._reset_pending = True
            return
        events = replay.events
        # From the whole replay: events hidden from this reader still mark how far it went.
        threshold = events[-1].position if events else replay.position
        visible = self._visible
        if visible is not None:
            events = [e for e in events if not e.private or visible(e)]
        if threshold is not None:
            queue = self._queue
            while queue and queue[0].position <= threshold:
                queue.popleft()  # already in the replay (or before the resume point)
            if not queue:
                self._floor = threshold
        self._replay = events

    def _take(self) -> list[Item]:
        items: list[Item] = []
        if self._reset_pending:
            self._reset_pending = False
            items.append(Reset(self._reset))  # type: ignore[arg-type]
        replayed = len(self._replay)
        if replayed:
            items.extend(self._replay)
            self._replay = ()
        if self._dropped_pending:
            items.append(Dropped(self._dropped_pending))
            self._dropped_pending = 0
        queue = self._queue
        live = 0
        if queue:
            live = len(queue)
            items.extend(queue)
            queue.clear()
        count = replayed + live
        if count:
            self._delivered += count
            self._broker._delivered += count
        if self._space is not None:
            self._space.set()
            self._space = None
        return items

    def receive_nowait(self) -> list[Item]:
        """Return every item pending now (see :meth:`Subscription.receive_nowait`)."""
        if self._resume_id is not None:
            return []
        if self._queue or self._replay or self._reset_pending or self._dropped_pending:
            return self._take()
        return []

    async def receive(self) -> list[Item]:
        """Wait for items and return every item pending now (see
        :meth:`Subscription.receive`)."""
        if self._resume_id is not None:
            await self.prepare()
        while True:
            items = self.receive_nowait()
            if items:
                return items
            if self._end_reason is not None:
                await anyio.lowlevel.checkpoint()
                return []
            waiter = self._broker._new_event()
            ready = self._ready = waiter.set
            try:
                await waiter.wait()
            finally:
                # Cancelled: forget the waiter, which may reach the waiting task (and through
                # it the handle) until the next event would have cleared it.
                if self._ready is ready:
                    self._ready = None
