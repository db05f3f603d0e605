"""Clocks: everything time-based in ssehub reads one, so tests can drive time by hand.

:class:`SystemClock` is the default. :class:`ManualClock` (re-exported by ``ssehub.testing``) only
moves when a test calls :meth:`ManualClock.advance`, which also wakes every sleeper whose deadline
has passed, so tests of history age, connection age or backoff never sleep for real.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time in seconds and a way to wait for a point in it."""

    def time(self) -> float:
        """Return the current time in seconds (only differences are meaningful)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once :meth:`time` has reached ``deadline`` (at once if it already has)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`anyio.sleep`."""

    def time(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic clock reaches ``deadline``."""
        await anyio.sleep(max(0.0, deadline - time.monotonic()))


class ManualClock:
    """A clock that stands still until :meth:`advance` is called.

    Args:
        start: the initial time in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()

    def time(self) -> float:
        """Return the current manual time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` moves the time to ``deadline`` or past it."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._counter), event)
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: no longer a sleeper
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock (useful to wait for a task to park)."""
        return len(self._sleepers)
