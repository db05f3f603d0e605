"""Subscription deadlines: one task ends subscriptions at their deadlines on the broker clock.

Two things give a subscription a deadline. ``max_connection_age``: long-lived connections pin
clients to one hub process and keep proxies' connection tables full; ending them after a maximum
age (with jitter, so they do not all reconnect in the same second) spreads clients across
processes after deploys. ``expires_at``: a stream opened with a credential must end when the
credential does (the hub passes a token's ``exp``). Clients resume exactly with
``Last-Event-ID`` either way.

There is one task for all subscriptions: it sleeps until the earliest deadline via
``clock.sleep_until`` and is woken early only when a subscription gets an even earlier deadline.
No timer task per subscription, no polling. The heap holds subscription states, not the handles
consumers hold, so an abandoned subscription's handle can still be garbage collected.
"""

from __future__ import annotations

import heapq
import itertools
import math
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
    """Ends each subscription at its deadline on ``clock``: ``expires_at`` (``EXPIRED``) or
    ``now + max_age * (1 - jitter * U[0, 1))`` (``MAX_AGE``), whichever comes first.

    Args:
        clock: the broker's clock.
        max_age: the maximum connection age in seconds, or ``None`` for none.
        jitter: the fraction of ``max_age`` a deadline may come early (``0 <= jitter < 1``).
        rng: the random source for jitter (tests pass a seeded ``random.Random``).
    """

    def __init__(
        self, clock: Clock, max_age: float | None, jitter: float, rng: random.Random | None
    ) -> None:
        self._clock = clock
        self._max_age = max_age
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security
        self._heap: list[tuple[float, int, SubscriptionState, EndReason]] = []
        self._counter = itertools.count()
        self._dead = 0
        self._idle: anyio.Event | None = None
        self._sleep: tuple[anyio.CancelScope, float] | None = None

    def add(self, state: SubscriptionState, expires_at: float | None) -> None:
        """Give the subscription ``state`` its deadline, if it has one, and wake the task if it
        is the earliest."""
        deadline, reason = math.inf, EndReason.MAX_AGE
        if self._max_age is not None:
            jitter = self._jitter * self._rng.random()
            deadline = self._clock.time() + self._max_age * (1.0 - jitter)
        if expires_at is not None and expires_at <= deadline:
            deadline, reason = expires_at, EndReason.EXPIRED
        if deadline == math.inf:
            return
        state.deadline = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), state, reason))
        if self._idle is not None:
            self._idle.set()
            self._idle = None
        elif self._sleep is not None and deadline < self._sleep[1]:
            self._sleep[0].cancel()

    def discard(self, state: SubscriptionState) -> None:
        """Note that ``state`` ended (for another reason than its deadline, which popped it)."""
        if state.deadline is None or state._end_reason in (EndReason.MAX_AGE, EndReason.EXPIRED):
            return
        self._dead += 1  # its heap entry is now dead
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
                _, _, state, reason = heapq.heappop(heap)
                if state._end_reason is None:
                    state._end(reason)  # discard() skips it: this entry is popped
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
