"""Timers: every stream's deadlines on one timer per event loop.

A stream wakes up for its ping, for a send that has taken too long (``send_timeout``) and for
the end of a shutdown's grace period. An :class:`AlarmClock` keeps the :class:`Alarm` s of one
event loop in a heap behind a single timer: ``loop.call_at`` under asyncio, one system task per
run under trio. An idle stream costs no timer handle, cancel scope or task, and alarms are
re-armed lazily (docs/ARCHITECTURE.md, "Timers"). Everything runs on the loop's thread.
"""

from __future__ import annotations

import heapq
import logging
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel

if TYPE_CHECKING:
    import asyncio  # noqa: TID251 - types only

__all__ = ["SLACK", "Alarm", "AlarmClock", "current_clock", "running_loop"]

logger = logging.getLogger("ssehub.response")

_SWEEP_MIN = 64  # stopped alarms tolerated in a heap before it is rebuilt without them

_TOLERANCE = 0.001
"""Seconds early an alarm may ring: the coarsest timer rounding of the supported loops."""

SLACK: Final = 0.02
"""Seconds late the clock of an event loop may ring an alarm, so that alarms due close together
ring in one wake-up: streams sent to together (a broadcast) have their send deadlines and pings
due within milliseconds of each other, and without slack each would wake the loop on its own.
Far below what a ping (seconds) or a send timeout needs."""


class Alarm:
    """One deadline of one stream, rung by its :class:`AlarmClock`.

    Subclasses implement :meth:`ring`. An alarm sits in its clock's heap at most once, at
    ``due``; :meth:`start` with a later time leaves it there (the next ring re-arms it),
    and :meth:`stop` only marks it, so neither costs a heap operation in the common case.
    """

    __slots__ = ("_active", "_clock", "_due", "_queued")

    def __init__(self, clock: AlarmClock) -> None:
        self._clock = clock
        self._due = math.inf  # where the alarm sits in the heap (while _queued)
        self._queued = False
        self._active = False

    def __lt__(self, other: Alarm) -> bool:
        # heapq orders by "<": the heap holds the alarms themselves, no (time, seq) tuples.
        return self._due < other._due

    def start(self, due: float) -> None:
        """Ring at ``due`` (loop time), or up to the clock's slack later; :meth:`ring` is
        called then."""
        clock = self._clock
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
        if self._active and self._queued:
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
        loop: the asyncio event loop whose ``time()`` and ``call_at()`` are used (under trio,
            a :class:`_TrioTimer`).
        slack: seconds the timer fires after the earliest due alarm, ringing every alarm due
            by then in the same callback (see :data:`SLACK`).
    """

    __slots__ = (
        "__weakref__",
        "_at",
        "_dead",
        "_early",
        "_handle",
        "_heap",
        "_loop",
        "_seq",
        "_slack",
    )

    def __init__(self, loop: Any, slack: float = 0.0) -> None:
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
        self._at = math.inf  # the due time the handle serves (it fires _slack later)
        self._slack = slack

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
        self._handle = weakref.ref(loop.call_at(at + self._slack, self._fire))

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
        # whole milliseconds. Without slack, an alarm within that tolerance counts as due (an
        # early firing would otherwise re-arm at zero delay until the time really came); with
        # slack the timer fires well after the earliest due time anyway.
        limit = now if self._slack >= _TOLERANCE else now + _TOLERANCE
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


# One clock per event loop (keyed by the asyncio loop or trio's token), freed with it.
_clocks: weakref.WeakKeyDictionary[Any, AlarmClock] = weakref.WeakKeyDictionary()


def current_clock() -> AlarmClock:
    """Return the :class:`AlarmClock` of the running event loop (created on first use)."""
    native = anyio.lowlevel.current_token().native_token
    clock = _clocks.get(native)
    if clock is None:
        loop = running_loop()
        clock = _clocks[native] = AlarmClock(loop if loop is not None else _TrioTimer(), SLACK)
    return clock


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running asyncio event loop, or ``None`` under another library (trio)."""
    import asyncio  # noqa: TID251 - the alarms use asyncio's own timer, only when it runs

    loop = anyio.lowlevel.current_token().native_token
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


class _TrioTimer:
    """``time()`` and ``call_at()`` for an :class:`AlarmClock` under trio, which has no loop
    timer: one system task per run sleeps in a cancel scope whose deadline is the clock's.

    It is its own (single) handle: the clock cancels its timer before arming another.
    """

    __slots__ = ("__weakref__", "_at", "_callback", "_scope", "time")

    def __init__(self) -> None:
        import trio  # only reached under trio

        self.time = trio.current_time
        self._at = math.inf
        self._callback: Callable[[], object] | None = None
        self._scope: Any = None
        # The task references the timer; the clock only weakly (as it does a loop).
        trio.lowlevel.spawn_system_task(self._run, name="ssehub alarm clock")

    def call_at(self, at: float, callback: Callable[[], object]) -> _TrioTimer:
        self._at = at
        self._callback = callback
        if self._scope is not None:
            self._scope.deadline = at
        return self

    def cancel(self) -> None:
        self._callback = None
        self._at = math.inf
        if self._scope is not None:
            self._scope.deadline = math.inf

    async def _run(self) -> None:
        import trio

        while True:
            with trio.CancelScope(deadline=self._at) as self._scope:
                await trio.sleep_forever()
            # The deadline passed (the run's end cancels the task instead). A timer moved
            # later after the scope expired goes round again.
            callback = self._callback
            if callback is not None and trio.current_time() >= self._at:
                self._at = math.inf
                self._callback = None
                callback()
