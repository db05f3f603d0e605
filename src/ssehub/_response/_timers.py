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

_SWEEP_MIN = 64  # dead entries tolerated in a heap before it is rebuilt without them

_TOLERANCE = 0.001
"""Seconds early an alarm may ring: the coarsest timer rounding of the supported loops."""

SLACK: Final = 0.02
"""Seconds late the clock of an event loop may ring an alarm, so that alarms due close together
ring in one wake-up: streams sent to together (a broadcast) have their send deadlines and pings
due within milliseconds of each other, and without slack each would wake the loop on its own.
Far below what a ping (seconds) or a send timeout needs."""


class Alarm:
    """One deadline of one stream, rung by its :class:`AlarmClock`.

    Subclasses implement :meth:`ring`. An alarm has at most one live entry in its clock's heap,
    at ``_at``; :meth:`start` with a later time leaves it there (the next ring answers the real
    time), and :meth:`stop` only marks it, so neither costs a heap operation in the common case.
    """

    __slots__ = ("_active", "_at", "_clock")

    def __init__(self, clock: AlarmClock) -> None:
        self._clock = clock
        self._at = math.inf  # the time of its live heap entry; inf: none
        self._active = False

    def __lt__(self, other: Alarm) -> bool:
        # Heap entries are (time, alarm) tuples, compared in C on the time; only two alarms due
        # at the very same time get here, and either order will do.
        return False

    def start(self, due: float) -> None:
        """Ring at ``due`` (loop time), or up to the clock's slack later; :meth:`ring` is
        called then."""
        clock = self._clock
        if not self._active:
            self._active = True
            if self._at != math.inf:
                clock._dead -= 1  # stopped while queued: its entry is live again
        if due < self._at:
            if self._at != math.inf:
                clock._dead += 1  # earlier than planned (a shutdown): the old entry is dead
            clock._push(self, due)

    def stop(self) -> None:
        """Do not ring until the next :meth:`start`."""
        if self._active:
            self._active = False
            if self._at != math.inf:
                self._clock._dead += 1
                self._clock._sweep()

    def ring(self, now: float) -> float | None:
        """Called at the alarm's time (``now``, loop time) while it is started. To move its own
        deadline, a ring returns the new time rather than calling :meth:`start`.

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

    __slots__ = ("__weakref__", "_armed", "_dead", "_handle", "_heap", "_loop", "_slack")

    def __init__(self, loop: Any, slack: float = 0.0) -> None:
        # Weakly: the clocks are kept in a weak dictionary keyed by their loop, and a strong
        # reference from the value would keep every loop (and its clock) alive forever.
        self._loop: Any = weakref.ref(loop)  # a reference, not a proxy: see _waiter.py
        # (time, alarm) entries: an alarm started earlier than its entry gets a second one, and
        # whichever comes first rings it; taking one out of the middle would cost O(n) each,
        # and a hub that drains ends every stream at once.
        self._heap: list[tuple[float, Alarm]] = []
        # Dead entries (of stopped alarms, or superseded): a stream that ends leaves its entry
        # until its old time (a ping an hour away); past half the heap they are swept out.
        self._dead = 0
        self._handle: weakref.ref[asyncio.TimerHandle] | None = None
        self._armed = math.inf  # the due time the handle serves (it fires _slack later)
        self._slack = slack

    def __len__(self) -> int:
        """Entries waiting for their time (dead ones included, until it comes)."""
        return len(self._heap)

    def _sweep(self) -> None:
        if self._dead >= _SWEEP_MIN and self._dead * 2 >= len(self._heap):
            live: list[tuple[float, Alarm]] = []
            for entry in self._heap:
                due, alarm = entry
                if due == alarm._at:
                    alarm._at = math.inf  # restored below if live (an alarm with two entries
                    # at the same time keeps one)
                    if alarm._active:
                        live.append(entry)
            for due, alarm in live:
                alarm._at = due
            heapq.heapify(live)
            self._heap = live
            self._dead = 0

    def _push(self, alarm: Alarm, due: float) -> None:
        alarm._at = due
        heapq.heappush(self._heap, (due, alarm))
        if due < self._armed:
            self._arm(due)

    def _arm(self, at: float) -> None:
        handle = self._handle() if self._handle is not None else None
        if handle is not None:
            handle.cancel()
        self._armed = at
        # Weakly held: a handle references its loop, and a timer still pending when the loop
        # closes would otherwise keep the loop (the weak dictionary's key) alive for ever.
        loop = self._loop()
        if at == math.inf or loop is None:
            self._handle = None
            return
        self._handle = weakref.ref(loop.call_at(at + self._slack, self._fire))

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
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
        # self._heap each time: a ring that stops an alarm may sweep it into a new list.
        while (heap := self._heap) and heap[0][0] <= limit:
            due, alarm = heapq.heappop(heap)
            if due != alarm._at or not alarm._active:
                self._dead -= 1  # superseded by an earlier entry, or stopped
                if due == alarm._at:
                    alarm._at = math.inf
                continue
            alarm._at = math.inf
            try:
                later = alarm.ring(now)
            except Exception:
                # One stream's failure must not stop every other stream's alarms.
                logger.exception("an alarm failed")
                later = None
            if later is None:
                alarm.stop()  # counts the entry its own ring may have added as dead
            else:
                # Re-armed after the loop: a ring answering a time already past would
                # otherwise be popped again at once, forever.
                again.append((alarm, max(later, limit)))
        for alarm, due in again:
            if alarm._active and due < alarm._at:
                alarm.start(due)
        self._sweep()
        first = self._heap[0][0] if self._heap else math.inf
        if first < self._armed:
            self._arm(first)


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
