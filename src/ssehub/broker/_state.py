"""What the broker holds of a subscription: its queue, overflow policy, resume handover, counters.

A :class:`~ssehub.broker.Subscription` is the consumer's handle on one :class:`SubscriptionState`,
which is itself a weak reference to the handle. The broker (registry, fan-out, deadlines) holds
only states, so a handle dropped without ``close()`` is garbage collected, and the weak
reference's callback (the broker's ``Releaser``) has the broker end the state with
:attr:`EndReason.ABANDONED`. Everything here runs on the broker's event loop thread; only that
callback may run elsewhere, and it only queues the state for the loop (see ``_release.py``).

The publish path calls :meth:`SubscriptionState._push` once per subscriber: an append to a
deque, a length check, one readiness callback if the consumer waits; no encoding (frames are
cached on the event) and no task switch. Private events a reader may not see are filtered once,
as they are queued (and out of the replay).

The consumer side is pull-only: :meth:`SubscriptionState.receive_nowait` takes what is pending,
and ``_ready`` (set by :meth:`Subscription.on_ready`) is a one-shot callback for when more
arrives; the handle's ``receive()``, async iterator and frame source are built on those two.

Resume (``Last-Event-ID``) is Mercure's *live queue* handover: the subscription is registered
first, so live events buffer in its queue while :meth:`SubscriptionState.prepare` fetches the
replay; the consumer gets the replay, then the live events after it, none missed or delivered
twice even with an asynchronous backend (docs/ARCHITECTURE.md, "Resume and replay").
"""

from __future__ import annotations

import enum
import logging
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .events import Dropped, Position, Reset, ResetReason, StoredEvent
from .policy import OverflowPolicy

if TYPE_CHECKING:
    from .._deadlines import Deadline
    from .._frames import ReadyCallback
    from .broker import Broker
    from .patterns import TopicMatcher
    from .subscription import Subscription

__all__ = ["EndReason", "Item", "SubscriptionState"]

logger = logging.getLogger("ssehub.broker")

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
    EXPIRED = "expired"
    """It reached the ``expires_at`` given to :meth:`~ssehub.Broker.subscribe` (the hub passes
    the expiry of the stream's credential)."""
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
        "_deadline",
        "_delivered",
        "_dropped",
        "_dropped_pending",
        "_dropped_upto",
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
        # __new__ set the referent and the callback (weakref's __init__ only checks arguments).
        self._broker = broker
        self.topics = topics
        self.patterns = patterns
        self._maxsize = maxsize
        self._policy = policy
        # Made on first use (the queue by an event, the buffer by ``async for`` only): an idle
        # stream needs neither deque, and an empty one costs over 600 bytes.
        self._queue: deque[StoredEvent] | None = None
        self._buffer: deque[Item] | None = None
        self._ready: ReadyCallback | None = None
        self._space: anyio.Event | None = None
        self._end_reason: EndReason | None = None
        self._resume_id = resume_id  # not None while the replay is still to be fetched
        self._reset = reset
        self._reset_pending = reset is not None
        self._replay: Sequence[StoredEvent] = ()
        self._floor: Position | None = None  # live events at or below it were replayed
        self._dropped_pending = 0
        self._dropped_upto: Position | None = None  # newest event dropped before the replay
        self._visible = visible  # private events it refuses are never queued, replayed, counted
        self._peak = 0
        self._dropped = 0
        self._delivered = 0
        self._deadline: Deadline | None = None  # see lifetime.py

    @property
    def _queued(self) -> int:
        return len(self._queue) if self._queue else 0

    # -- publish side (called by the broker on the event loop thread) --------------------------

    def _push(self, event: StoredEvent) -> bool:
        """Queue ``event``; return ``False`` when the ``disconnect`` policy must shed us."""
        if self._end_reason is not None:
            return True  # ended during this fan-out (by another consumer's callback)
        if self._floor is not None:
            # A backend whose sink lags (a Redis reader) may deliver, after the handover,
            # events that were already replayed. The sink is in order, so the first newer
            # event ends the check.
            if event.position <= self._floor:
                return True
            self._floor = None
        if event.private and not self._may_see(event):
            return True  # never this reader's: not queued, not counted
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._maxsize:
            policy = self._policy
            if policy is OverflowPolicy.DISCONNECT:
                return False
            if policy is OverflowPolicy.DROP_OLDEST:
                dropped = queue.popleft()
                self._dropped_pending += 1
                if self._resume_id is not None:
                    # Maybe in the replay still to be fetched: counted by prepare() if not.
                    self._dropped_upto = dropped.position
                else:
                    self._dropped += 1
                    self._broker._dropped += 1
            # BLOCK: publish waited for room, but concurrent publishers (or a remote backend)
            # may still overshoot; the bound is soft rather than lose an event.
        queue.append(event)
        self._peak = max(self._peak, len(queue))
        ready = self._ready
        if ready is not None:
            self._ready = None
            try:
                ready()
            except Exception:
                # A consumer's bug must not stop the fan-out to every later subscriber.
                logger.exception("a subscription's on_ready callback failed")
        return True

    def _may_see(self, event: StoredEvent) -> bool:
        """Whether the reader may see the private ``event``; ``False`` if ``visible`` fails."""
        visible = self._visible
        if visible is None:
            return True
        try:
            return bool(visible(event))
        except Exception:
            # Withheld rather than raised into the publisher's fan-out (or a replay).
            logger.exception("a subscription's visible() failed; the private event is withheld")
            return False

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
            # Shed: free the memory now; the client resumes from history (and those events
            # count as dropped). An unfinished resume cannot be delivered without its replay,
            # so it is discarded too, uncounted: its client resumes from the same id again.
            if reason is EndReason.SHED:
                discarded = self._queued
                self._dropped += discarded
                self._broker._dropped += discarded
            self._queue = self._resume_id = self._dropped_upto = None
            self._reset_pending, self._dropped_pending = False, 0
        ready = self._ready
        if ready is not None:
            self._ready = None
            try:
                ready()
            except Exception:
                # Raised into the fan-out that sheds us, it would spare the rest of the shed.
                logger.exception("a subscription's on_ready callback failed")
        if self._space is not None:
            self._space.set()
            self._space = None
        self._broker._unregister(self)

    # -- consumer side (the handle's methods of the same names call these) ---------------------

    async def prepare(self) -> None:
        """See :meth:`Subscription.prepare`."""
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
            self._count_early_drops(gap=True)
            return
        events = replay.events
        # From the whole replay: events hidden from this reader still mark how far it went.
        threshold = events[-1].position if events else replay.position
        events = [e for e in events if not e.private or self._may_see(e)]
        upto = self._dropped_upto
        # Every event dropped while the replay was fetched may be in it: then there is no gap.
        # (When only some are, all count: an overstatement, never a gap left unreported.)
        self._count_early_drops(gap=upto is not None and (threshold is None or upto > threshold))
        if threshold is not None:
            queue = self._queue
            while queue and queue[0].position <= threshold:
                queue.popleft()  # already in the replay (or before the resume point)
            if not queue:
                self._floor = threshold
        self._replay = events

    def _count_early_drops(self, *, gap: bool) -> None:
        # Drops while the replay was fetched count only once it is known that they were lost
        # (the counters are Prometheus counters: they must never go down).
        if self._dropped_upto is None:
            return
        self._dropped_upto = None
        if gap:
            self._dropped += self._dropped_pending
            self._broker._dropped += self._dropped_pending
        else:
            self._dropped_pending = 0

    def _take(self) -> list[Item]:
        items: list[Item] = []
        if self._reset_pending:
            self._reset_pending = False
            items.append(Reset(self._reset))  # type: ignore[arg-type]
        count = len(self._replay)
        if count:
            items.extend(self._replay)
            self._replay = ()
        if self._dropped_pending:
            items.append(Dropped(self._dropped_pending))
            self._dropped_pending = 0
        queue = self._queue
        if queue:
            count += len(queue)
            items.extend(queue)
            queue.clear()
        self._delivered += count
        self._broker._delivered += count
        if self._space is not None:
            self._space.set()
            self._space = None
        return items

    def receive_nowait(self) -> list[Item]:
        """See :meth:`Subscription.receive_nowait`."""
        if self._resume_id is not None:
            return []
        if self._queue or self._replay or self._reset_pending or self._dropped_pending:
            return self._take()
        return []

    async def receive(self) -> list[Item]:
        """See :meth:`Subscription.receive`."""
        if self._resume_id is not None:
            await self.prepare()
        while True:
            if items := self.receive_nowait():
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
