"""A subscriber's bounded queue, its overflow policy, resume handover and statistics.

The publish path calls :meth:`Subscription._push` once per subscriber: an append to a deque, a
length check, and one readiness callback if the consumer waits. No encoding (the frame bytes
are cached on the event) and no task switch per subscriber.

The consumer side is pull-only: :meth:`Subscription.receive_nowait` takes what is pending and
:meth:`Subscription.on_ready` registers a one-shot callback for when more arrives. The async
iterator, :meth:`Subscription.receive` and the response's frame source are built on those two.
Private events a reader may not see are filtered once, as they are queued.

Resume (``Last-Event-ID``) uses the handover Mercure calls the *live queue*: the subscription is
registered for live events first (so they buffer in the queue), then the replay is fetched from
the backend, then the consumer gets the replay followed by the buffered live events whose
position is after the last replayed one. Nothing published while the replay is being fetched
can be missed or delivered twice, even with an asynchronous backend.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .._exceptions import SlowConsumer
from .events import Dropped, Position, Reset, ResetReason, StoredEvent
from .policy import OverflowPolicy
from .stats import SubscriptionStatistics

if TYPE_CHECKING:
    from types import TracebackType

    from .._frames import ReadyCallback
    from .broker import Broker

__all__ = ["EndReason", "Item", "Subscription"]

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


class Subscription:
    """A live view of one or more topics: an async iterator, a FrameSource, a context manager.

    Created by :meth:`ssehub.Broker.subscribe`, which registers it at once. Consume it in one
    way at a time: ``async for item in sub`` (items are :class:`StoredEvent`, :class:`Reset`
    and :class:`Dropped`), :meth:`receive`, :meth:`receive_nowait` with :meth:`on_ready`, or
    as an ``EventSourceResponse``'s content (encoded frames).

    Attributes:
        topics: the subscribed topics.
        deadline: the broker-clock time at which ``max_connection_age`` ends it, or ``None``.
    """

    __slots__ = (
        "__weakref__",
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
        "topics",
    )

    def __init__(
        self,
        broker: Broker,
        topics: tuple[str, ...],
        *,
        maxsize: int,
        policy: OverflowPolicy,
        resume_id: str | None,
        reset: ResetReason | None,
        visible: Callable[[StoredEvent], bool] | None = None,
    ) -> None:
        self._broker = broker
        self.topics = topics
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
    def reset(self) -> ResetReason | None:
        """Why the ``Last-Event-ID`` could not be resumed, or ``None`` (resumed, or none given).

        ``MALFORMED`` is known at once; ``UNKNOWN`` and ``EXPIRED`` after :meth:`prepare` (or the
        first receive), since they need the backend.
        """
        return self._reset

    @property
    def end_reason(self) -> EndReason | None:
        """Why the subscription ended, or ``None`` while it is open."""
        return self._end_reason

    @property
    def closed(self) -> bool:
        """Whether the subscription has ended (pending items may still be delivered)."""
        return self._end_reason is not None

    @property
    def _queued(self) -> int:
        return len(self._queue) if self._queue else 0

    def statistics(self) -> SubscriptionStatistics:
        """Return ``(queued, peak, dropped, delivered)``."""
        return SubscriptionStatistics(self._queued, self._peak, self._dropped, self._delivered)

    def __repr__(self) -> str:
        state = self._end_reason.value if self._end_reason is not None else "open"
        return f"<Subscription topics={list(self.topics)!r} {state} queued={self._queued}>"

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

    # -- consumer side ---------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Fetch the replay now, so :attr:`reset` is final (call before sending headers).

        Idempotent; the first receive calls it anyway. Cancellation-safe: if cancelled, the
        fetch is simply retried by the next call.

        Raises:
            BackendUnavailable: the backend cannot be reached (the subscription stays usable).
        """
        resume_id = self._resume_id
        if resume_id is None:
            return
        replay = await self._broker._backend_replay(self.topics, resume_id)
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
        """Return every item pending now, without waiting; ``[]`` when none is.

        Once :attr:`closed` is true, ``[]`` means everything was delivered: the subscription
        is over. Before a ``Last-Event-ID`` replay was fetched (:meth:`prepare`), nothing is
        pending.
        """
        if self._resume_id is not None:
            return []
        if self._queue or self._replay or self._reset_pending or self._dropped_pending:
            return self._take()
        return []

    def on_ready(self, callback: ReadyCallback | None) -> None:
        """Call ``callback`` once, when the next item is queued or the subscription ends.

        Replaces the previous callback; ``None`` forgets it. It runs inside the publishing
        call (on the event loop's thread), so it must be cheap and must not raise: setting an
        event is the intended use. Check :meth:`receive_nowait` first, then register.
        """
        self._ready = callback

    async def receive(self) -> list[Item]:
        """Wait for items and return every item pending now; ``[]`` once ended.

        Cancellation-safe: nothing is taken from the queue until the wait is over.

        Raises:
            BackendUnavailable: the replay could not be fetched (see :meth:`prepare`).
        """
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
            self._ready = waiter.set
            await waiter.wait()

    def take_frames(self) -> list[bytes] | None:
        """Return the pending items as encoded frames (encoded once, shared by every
        subscriber), ``[]`` if none, or ``None`` once ended and empty.

        Implements :class:`ssehub._frames.FrameSource`.
        """
        items = self.receive_nowait()
        if items:
            return [item.encode() for item in items]
        return None if self._end_reason is not None else []

    def close(self) -> None:
        """End the subscription and unregister it at once; idempotent."""
        self._end(EndReason.CLOSED)

    async def aclose(self) -> None:
        """End the subscription (same as :meth:`close`); idempotent."""
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        """Return the next item.

        Raises:
            StopAsyncIteration: the subscription ended (closed, broker shut down, max age).
            SlowConsumer: it was shed by the ``disconnect`` policy; events were lost here, resume
                from history with the last id you processed.
        """
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        if not buffer:
            buffer.extend(await self.receive())
            if not buffer:
                if self._end_reason is EndReason.SHED:
                    raise SlowConsumer("the subscription fell behind and was disconnected")
                raise StopAsyncIteration
        return buffer.popleft()
