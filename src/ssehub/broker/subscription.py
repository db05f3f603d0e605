"""A subscriber's handle: an async iterator, a FrameSource, a context manager.

:class:`Subscription` is what :meth:`ssehub.Broker.subscribe` returns and the consumer holds.
What the broker needs (queue, overflow policy, resume handover, counters) is in the handle's
:class:`~ssehub.broker._state.SubscriptionState`, whose docstring tells how the two relate and how
an unclosed handle is released. Methods that wait are coroutines of the handle, so a subscription
someone is waiting on stays referenced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import SlowConsumer
from ._state import EndReason, Item, SubscriptionState
from .events import ResetReason, StoredEvent
from .policy import OverflowPolicy
from .stats import SubscriptionStatistics

if TYPE_CHECKING:
    from types import TracebackType

    from .._frames import ReadyCallback
    from .broker import Broker
    from .patterns import TopicMatcher

__all__ = ["EndReason", "Item", "Subscription"]


class Subscription:
    """A live view of one or more topics: an async iterator, a FrameSource, a context manager.

    Created by :meth:`ssehub.Broker.subscribe`, which registers it at once. Consume it in one
    way at a time: ``async for item in sub`` (items are :class:`StoredEvent`, :class:`Reset`
    and :class:`Dropped`), :meth:`receive`, :meth:`receive_nowait` with :meth:`on_ready`, or
    as an ``EventSourceResponse``'s content (encoded frames).

    Close it when done (``async with``, :meth:`close`, or the response that streams it) to
    release it at once. One that is dropped unclosed, such as a subscription iterated by your
    own generator, is released when it is garbage collected (``EndReason.ABANDONED``): as soon
    as the last reference goes, or at the cyclic collector's next run if a reference cycle held
    it. A callback registered with :meth:`on_ready` keeps what it references alive until it
    runs or is replaced.
    """

    __slots__ = ("__weakref__", "_state")

    def __init__(
        self,
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
        self._state = SubscriptionState(
            self,
            broker,
            topics,
            patterns,
            maxsize=maxsize,
            policy=policy,
            resume_id=resume_id,
            reset=reset,
            visible=visible,
        )

    @classmethod
    def _of(cls, state: SubscriptionState) -> Subscription:
        """Return the handle of ``state``, or a new one if it was garbage collected.

        The broker's hooks get a :class:`Subscription`; for an abandoned one the original is
        gone, so ``on_unsubscribe`` gets another handle on the same (ended) state.
        """
        handle = state()
        if handle is None:
            handle = cls.__new__(cls)
            handle._state = state
        return handle

    # -- state ---------------------------------------------------------------------------------

    @property
    def topics(self) -> tuple[str, ...]:
        """The subscribed exact topics (patterns are in :attr:`patterns`)."""
        return self._state.topics

    @property
    def patterns(self) -> tuple[TopicMatcher, ...]:
        """The subscribed patterns (:class:`~ssehub.broker.TopicPattern` for a ``*`` topic) and
        other :class:`~ssehub.broker.TopicMatcher` objects, distinct by key; ``()`` if none."""
        return self._state.patterns

    @property
    def deadline(self) -> float | None:
        """The broker-clock time at which it ends (``max_connection_age`` or ``expires_at``,
        whichever comes first), or ``None``."""
        deadline = self._state._deadline
        return None if deadline is None else float(deadline[0])

    @property
    def reset(self) -> ResetReason | None:
        """Why the ``Last-Event-ID`` could not be resumed, or ``None`` (resumed, or none given).

        ``MALFORMED`` is known at once; ``UNKNOWN`` and ``EXPIRED`` after :meth:`prepare` (or the
        first receive), since they need the backend.
        """
        return self._state._reset

    @property
    def end_reason(self) -> EndReason | None:
        """Why the subscription ended, or ``None`` while it is open."""
        return self._state._end_reason

    @property
    def closed(self) -> bool:
        """Whether the subscription has ended (pending items may still be delivered)."""
        return self._state._end_reason is not None

    def statistics(self) -> SubscriptionStatistics:
        """Return ``(queued, peak, dropped, delivered)``."""
        state = self._state
        return SubscriptionStatistics(state._queued, state._peak, state._dropped, state._delivered)

    def __repr__(self) -> str:
        state = self._state
        ended = state._end_reason
        patterns = f" patterns={[m.key for m in state.patterns]!r}" if state.patterns else ""
        return (
            f"<Subscription topics={list(state.topics)!r}{patterns}"
            f" {'open' if ended is None else ended.value} queued={state._queued}>"
        )

    # -- consumer side ---------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Fetch the replay now, so :attr:`reset` is final (call before sending headers).

        Idempotent; the first receive calls it anyway. Cancellation-safe: if cancelled, the
        fetch is simply retried by the next call.

        Raises:
            BackendUnavailable: the backend cannot be reached (the subscription stays usable).
        """
        await self._state.prepare()

    def receive_nowait(self) -> list[Item]:
        """Return every item pending now, without waiting; ``[]`` when none is.

        Once :attr:`closed` is true, ``[]`` means everything was delivered: the subscription
        is over. Before a ``Last-Event-ID`` replay was fetched (:meth:`prepare`), nothing is
        pending.
        """
        return self._state.receive_nowait()

    def on_ready(self, callback: ReadyCallback | None) -> None:
        """Call ``callback`` once, when the next item is queued or the subscription ends.

        Replaces the previous callback; ``None`` forgets it. It runs inside the publishing
        call (on the event loop's thread), so it must be cheap and must not raise: setting an
        event is the intended use. Check :meth:`receive_nowait` first, then register.
        """
        self._state._ready = callback

    async def receive(self) -> list[Item]:
        """Wait for items and return every item pending now; ``[]`` once ended.

        Cancellation-safe: nothing is taken from the queue until the wait is over.

        Raises:
            BackendUnavailable: the replay could not be fetched (see :meth:`prepare`).
        """
        return await self._state.receive()

    def take_frames(self) -> list[bytes] | None:
        """Return the pending items as encoded frames (encoded once, shared by every
        subscriber), ``[]`` if none, or ``None`` once ended and empty.

        Implements :class:`ssehub._frames.FrameSource`.
        """
        # Not delegated as a whole: one call fewer on the response's path for every wake-up.
        state = self._state
        items = state.receive_nowait()
        if items:
            return [item.encode() for item in items]
        return None if state._end_reason is not None else []

    def close(self) -> None:
        """End the subscription and unregister it at once; idempotent."""
        self._state._end(EndReason.CLOSED)

    async def aclose(self) -> None:
        """End the subscription (same as :meth:`close`); idempotent."""
        self._state._end(EndReason.CLOSED)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state._end(EndReason.CLOSED)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        """Return the next item.

        Raises:
            StopAsyncIteration: the subscription ended (closed, broker shut down, max age).
            SlowConsumer: it was shed by the ``disconnect`` policy; events were lost here, resume
                from history with the last id you processed.
        """
        state = self._state
        buffer = state._buffer
        if buffer is None:
            buffer = state._buffer = deque()
        if not buffer:
            buffer.extend(await state.receive())
            if not buffer:
                if state._end_reason is EndReason.SHED:
                    raise SlowConsumer("the subscription fell behind and was disconnected")
                raise StopAsyncIteration
        return buffer.popleft()
