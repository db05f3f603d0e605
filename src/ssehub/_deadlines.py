"""Callbacks at times on a :class:`~ssehub._clock.Clock`, all from one task.

What ends a subscription at its maximum age or its credential's expiry (the broker), and a
channel listener's stream at its token's expiry or the listener itself after its linger (the
hub), is a deadline on an injectable clock, so tests drive it with a ``ManualClock``. One task
per owner sleeps until the earliest deadline and is woken early only when an earlier one is
added: no task or cancel scope per deadline, and no polling. The loop-time deadlines of a
stream's sends and pings are another service (``_response/_timers.py``), on the event loop's
own timer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["Deadline", "Deadlines"]

logger = logging.getLogger("ssehub")

Deadline: TypeAlias = "list[Any]"
"""A scheduled call: ``[when, sequence, callback]`` (a list, so the heap compares it in C and
:meth:`Deadlines.cancel` can clear its callback in place)."""

_COMPACT_MIN = 1024  # cancelled entries tolerated before the heap is rebuilt without them


class Deadlines:
    """Calls callbacks at their times on ``clock``, from :meth:`run` (one task).

    Args:
        clock: the clock the times are on.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[Deadline] = []
        self._sequence = itertools.count()  # ties in time keep their order; never compared on
        self._cancelled = 0
        self._until = math.inf  # when run() wakes up next
        self._idle: anyio.Event | None = None  # while run() waits with nothing scheduled
        self._sleep: anyio.CancelScope | None = None  # while run() sleeps until _until

    def __len__(self) -> int:
        """Scheduled calls, cancelled ones included until they are swept or their time comes."""
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], object]) -> Deadline:
        """Call ``callback`` (from the event loop thread) once ``clock.time() >= when``.

        Returns:
            The deadline: its time is ``deadline[0]``; pass it to :meth:`cancel`.
        """
        deadline = [when, next(self._sequence), callback]
        heapq.heappush(self._heap, deadline)
        if when < self._until:
            self._until = when
            if self._idle is not None:
                self._idle.set()
                self._idle = None
            elif self._sleep is not None:
                self._sleep.cancel()  # sleeping until later: look again
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        """Do not call it; idempotent, and nothing happens once it was called."""
        if deadline[2] is None:
            return
        deadline[2] = None
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 >= len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Make the calls as their times come; runs until cancelled."""
        while True:
            now = self._clock.time()
            # self._heap each time: a callback may cancel, and a compaction makes a new list.
            while (heap := self._heap) and heap[0][0] <= now:
                deadline = heapq.heappop(heap)
                callback, deadline[2] = deadline[2], None
                if callback is None:
                    self._cancelled -= 1
                    continue
                try:
                    callback()
                except Exception:
                    # One owner's failure must not stop everyone else's deadlines.
                    logger.exception("a deadline callback failed")
                # While this task waits, its frame must not keep the last callback (and what
                # it references: a listener, a subscription) alive.
                callback = None
            if not heap:
                self._until = math.inf
                idle = self._idle = anyio.Event()
                await idle.wait()
                continue
            until = self._until = heap[0][0]
            with anyio.CancelScope() as self._sleep:
                await self._clock.sleep_until(until)
            self._sleep = None
