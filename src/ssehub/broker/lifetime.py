"""Maximum connection age: one task ends subscriptions at their deadlines on the broker clock.

Long-lived connections pin clients to one hub process and keep proxies' connection tables full;
ending them after a maximum age (with jitter, so they do not all reconnect in the same second)
spreads clients across processes after deploys. Clients resume exactly with ``Last-Event-ID``.

There is one task for all subscriptions: it sleeps until the earliest deadline via
``clock.sleep_until`` and is woken early only when a subscription gets an even earlier deadline.
No timer task per subscription, no polling. The heap holds subscription states, not the handles
consumers hold, so an abandoned subscription's handle can still be garbage collected.
"""

from __future__ import annotations

import heapq
import itertools
import random
from typing import TYPE_CHECKING

import anyio

from ._state import EndReason

if TYPE_CHECKING:
    from .._clock import Clock
    from ._state import SubscriptionState

__all__ = ["AgeReaper"]

_COMPACT_MIN = 1024  # dead heap entries tolerated before the heap is rebuilt without them


class AgeReaper:
    """Ends each subscription at ``now + max_age * (1 - jitter * U[0, 1))`` on ``clock``.

    Args:
        clock: the broker's clock.
        max_age: the maximum connection age in seconds.
        jitter: the fraction of ``max_age`` a deadline may come early (``0 <= jitter < 1``).
        rng: the random source for jitter (tests pass a seeded ``random.Random``).
    """

    def __init__(
        self, clock: Clock, max_age: float, jitter: float, rng: random.Random | None
    ) -> None:
        self._clock = clock
        self._max_age = max_age
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security
        self._heap: list[tuple[float, int, SubscriptionState]] = []
        self._counter = itertools.count()
        self._dead = 0
        self._idle: anyio.Event | None = None
        self._sleep: tuple[anyio.CancelScope, float] | None = None

    def add(self, state: SubscriptionState) -> None:
        """Give the subscription ``state`` a deadline and wake the task if it is the earliest."""
        deadline = self._clock.time() + self._max_age * (1.0 - self._jitter * self._rng.random())
        state.deadline = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), state))
        if self._idle is not None:
            self._idle.set()
            self._idle = None
        elif self._sleep is not None and deadline < self._sleep[1]:
            self._sleep[0].cancel()

    def discard(self) -> None:
        """Note that a subscription with a deadline ended early (its heap entry is now dead)."""
        self._dead += 1
        if self._dead >= _COMPACT_MIN and self._dead * 2 >= len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2]._end_reason is None]
            heapq.heapify(self._heap)
            self._dead = 0

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        """End subscriptions as their deadlines pass; runs until cancelled."""
        while True:
            heap = self._heap
            now = self._clock.time()
            while heap and heap[0][0] <= now:
                state = heapq.heappop(heap)[2]
                if state._end_reason is None:
                    # The broker does not call discard() for MAX_AGE: this entry is popped.
                    state._end(EndReason.MAX_AGE)
                else:
                    self._dead -= 1
            if not heap:
                idle = self._idle = anyio.Event()
                await idle.wait()
                continue
            deadline = heap[0][0]
            with anyio.CancelScope() as scope:
                self._sleep = (scope, deadline)
                await self._clock.sleep_until(deadline)
            self._sleep = None
