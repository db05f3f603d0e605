"""Timers: every stream's deadlines on one event-loop timer.

A stream wakes up for its ping, for a send that has taken too long (``send_timeout``) and for
the end of a shutdown's grace period; an :class:`AlarmClock` keeps these :class:`Alarm` s of one
asyncio loop in a heap behind a single ``loop.call_at`` handle, so an idle stream costs no
timer handle, cancel scope or task. Alarms are re-armed lazily: a deadline that only moves later
touches no timer (docs/ARCHITECTURE.md, "Timers"). asyncio only, on the loop's thread; under
trio the pump uses cancel scope deadlines.
"""

from __future__ import annotations

import heapq
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

if TYPE_CHECKING:
    import asyncio  # noqa: TID251 - types only

__all__ = ["Alarm", "AlarmClock", "alarm_clock", "running_loop"]

logger = logging.getLogger("ssehub.response")

_SWEEP_MIN = 64  # stopped alarms tolerated in a heap before it is rebuilt without them

_TOLERANCE = 0.001
"""Seconds early an alarm may ring: the coarsest timer rounding of the supported loops."""


class Alarm:
    """One deadline of one stream, rung by its :class:`AlarmClock`.

    Subclasses implement :meth:`ring`. An alarm sits in its clock's heap at most once, at
    ``due``; :meth:`start` with a later time leaves it there (the next ring re-arms it),
    and :meth:`stop` only marks it, so neither costs a heap operation in the common case.
    """

    __slots__ = ("_active", "_clock", "_due", "_queued")

    def __init__(self, clock: AlarmClock | None) -> None:
        self._clock = clock  # None: the subclass keeps its deadlines another way
        self._due = math.inf  # where the alarm sits in the heap (while _queued)
        self._queued = False
        self._active = False

    def __lt__(self, other: Alarm) -> bool:
        # heapq orders by "<": the heap holds the alarms themselves, no (time, seq) tuples.
        return self._due < other._due

    def start(self, due: float) -> None:
        """Ring at ``due`` (loop time) at the latest; :meth:`ring` is called then."""
        clock = self._clock
        assert clock is not None, "an alarm without a clock cannot start"
        if not self._active and self._queued:
            clock._dead -= 1  # stopped, still in the heap, and alive again
        self._active = True
        if not self._queued:
            clock._push(self, due)
        elif due < self._due:
            clock._push_early(self, due)  # earlier than planned: rare (a shutdown)

    def stop(self) -> None:
        """Do not ring until the next :meth:`start`."""
        clock = self._clock
        if self._active and self._queued and clock is not None:
            clock._dead += 1
            clock._sweep()
        self._active = False

    def ring(self, now: float) -> float | None:
        """Called at the alarm's time (``now``, loop time) while it is started.

        Returns:
            A later time to be rung again at (the deadline has moved), or ``None`` to stop.
        """
        raise NotImplementedError


class AlarmClock:
    """The alarms of one event loop, behind a single ``loop.call_at`` timer.

    Args:
        loop: the event loop whose time and timer are used.
    """

    __slots__ = ("__weakref__", "_at", "_dead", "_early", "_handle", "_heap", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the clocks are kept in a weak dictionary keyed by their loop, and a strong
        # reference from the value would keep every loop (and its clock) alive forever.
        self._loop: Any = weakref.ref(loop)  # a reference, not a proxy: see _waiter.py
        self._heap: list[Alarm] = []
        # Alarms started earlier than where they sit in _heap, as (time, seq, alarm): taking
        # one out of the middle of the heap would cost O(n) each, and a hub that drains ends
        # every stream at once. The alarm stays in _heap too; whichever entry comes first
        # rings it, and a ring that finds it stopped or not yet due does nothing wrong.
        self._early: list[tuple[float, int, Alarm]] = []
        self._seq = 0
        # Stopped alarms still in _heap: a stream that ends leaves its alarm there until its
        # old time (a ping an hour away); past half the heap they are swept out at once.
        self._dead = 0
        self._handle: weakref.ref[asyncio.TimerHandle] | None = None
        self._at = math.inf  # when the handle fires

    def __len__(self) -> int:
        """Entries waiting for their time (stopped alarms included, until it comes)."""
        return len(self._heap) + len(self._early)

    def _sweep(self) -> None:
        if self._dead >= _SWEEP_MIN and self._dead * 2 >= len(self._heap):
            for alarm in self._heap:
                alarm._queued = alarm._active
            live = [alarm for alarm in self._heap if alarm._active]
            heapq.heapify(live)
            self._heap = live
            self._early = [entry for entry in self._early if entry[2]._active]
            heapq.heapify(self._early)
            self._dead = 0

    def _push(self, alarm: Alarm, due: float) -> None:
        alarm._due = due
        alarm._queued = True
        heapq.heappush(self._heap, alarm)
        if due < self._at:
            self._arm(due)

    def _push_early(self, alarm: Alarm, due: float) -> None:
        self._seq += 1
        heapq.heappush(self._early, (due, self._seq, alarm))
        if due < self._at:
            self._arm(due)

    def _arm(self, at: float) -> None:
        handle = self._handle() if self._handle is not None else None
        if handle is not None:
            handle.cancel()
        self._at = at
        # Weakly held: a handle references its loop, and a timer still pending when the loop
        # closes would otherwise keep the loop (the weak dictionary's key) alive for ever.
        loop = self._loop()
        if at == math.inf or loop is None:
            self._handle = None
            return
        self._handle = weakref.ref(loop.call_at(at, self._fire))

    def _fire(self) -> None:
        self._handle = None
        self._at = math.inf
        heap = self._heap
        early = self._early
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        again: list[tuple[Alarm, float]] = []
        # call_at may run a little early: asyncio rounds to its clock resolution and uvloop to
        # whole milliseconds. An alarm within that tolerance counts as due; without it an early
        # firing would re-arm at zero delay until the time really came.
        limit = now + _TOLERANCE
        while early and early[0][0] <= limit:
            self._ring(heapq.heappop(early)[2], now, limit, again)
        while heap and heap[0]._due <= limit:
            alarm = heapq.heappop(heap)
            alarm._queued = False
            if not alarm._active:
                self._dead -= 1
            self._ring(alarm, now, limit, again)
        for alarm, due in again:
            if not alarm._queued:
                self._push(alarm, due)
            elif due < alarm._due:
                self._push_early(alarm, due)
        self._sweep()
        heap = self._heap
        early = self._early
        first = min(heap[0]._due if heap else math.inf, early[0][0] if early else math.inf)
        if first < self._at:
            self._arm(first)

    def _ring(
        self, alarm: Alarm, now: float, limit: float, again: list[tuple[Alarm, float]]
    ) -> None:
        if not alarm._active:
            return
        try:
            later = alarm.ring(now)
        except Exception:
            # One stream's failure must not stop every other stream's alarms.
            logger.exception("an alarm failed")
            later = None
        if later is None:
            alarm._active = False
            if alarm._queued:
                self._dead += 1  # rung from the early heap; its main entry is now dead
        else:
            # Re-armed after the loops: a ring answering a time already past would
            # otherwise be popped again at once, forever.
            again.append((alarm, max(later, limit)))


# One clock per event loop; a loop that is garbage collected takes its clock with it.
_clocks: weakref.WeakKeyDictionary[Any, AlarmClock] = weakref.WeakKeyDictionary()


def alarm_clock(loop: asyncio.AbstractEventLoop) -> AlarmClock:
    """Return the :class:`AlarmClock` of ``loop`` (created on first use)."""
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = AlarmClock(loop)
    return clock


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running asyncio event loop, or ``None`` under another library (trio)."""
    import asyncio  # noqa: TID251 - the alarms use asyncio's own timer, only when it runs

    loop = anyio.lowlevel.current_token().native_token
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None
