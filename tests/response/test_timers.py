"""The alarm clock behind parked streams: one loop timer for every stream's deadline.

Driven by a fake loop whose time only moves when a test fires its timer, so nothing here
waits for real time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from ssehub._response._timers import SLACK, Alarm, AlarmClock, current_clock, running_loop


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two things an AlarmClock uses of a loop: ``time()`` and ``call_at()``."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    @property
    def live(self) -> list[Handle]:
        return [handle for handle in self.handles if not handle.cancelled]

    def fire(self) -> None:
        """Advance to the one live timer and run it (as the loop would)."""
        (handle,) = self.live
        handle.cancelled = True  # it ran: no longer pending
        self.now = handle.when
        handle.callback()


class Recorder(Alarm):
    """Records its rings; answers each with the next time in ``later`` (or stops)."""

    def __init__(self, clock: AlarmClock, name: str, rings: list[tuple[str, float]]) -> None:
        super().__init__(clock)
        self.name = name
        self.rings = rings
        self.later: list[float] = []

    def ring(self, now: float) -> float | None:
        self.rings.append((self.name, now))
        return self.later.pop(0) if self.later else None


def _clock() -> tuple[FakeLoop, AlarmClock, list[tuple[str, float]]]:
    loop = FakeLoop()
    return loop, AlarmClock(loop), []  # type: ignore[arg-type]


def test_alarms_ring_in_order_of_their_time_behind_one_timer() -> None:
    loop, clock, rings = _clock()
    for name, due in [("c", 103.0), ("a", 101.0), ("b", 102.0)]:
        Recorder(clock, name, rings).start(due)
    # One pending timer, for the earliest alarm, whatever the order of the starts.
    assert [handle.when for handle in loop.live] == [101.0]
    loop.fire()
    assert rings == [("a", 101.0)]
    assert [handle.when for handle in loop.live] == [102.0]
    loop.fire()
    loop.fire()
    assert rings == [("a", 101.0), ("b", 102.0), ("c", 103.0)]
    assert loop.live == []
    assert len(clock) == 0


def test_alarms_due_together_ring_in_one_timer_callback() -> None:
    loop, clock, rings = _clock()
    for name in "xyz":
        Recorder(clock, name, rings).start(101.0)
    loop.fire()
    assert sorted(name for name, _ in rings) == ["x", "y", "z"]
    assert len(loop.handles) == 1  # one timer scheduled for all three


def test_alarms_due_within_the_slack_of_the_first_ring_in_one_wake_up() -> None:
    # Streams sent to together have their deadlines milliseconds apart: with slack, the loop
    # wakes once for them, late by at most the slack, not once per stream.
    loop = FakeLoop()
    clock = AlarmClock(loop, slack=0.02)
    rings: list[tuple[str, float]] = []
    for name, due in [("a", 101.0), ("b", 101.01), ("c", 101.02), ("d", 101.05)]:
        Recorder(clock, name, rings).start(due)
    assert [handle.when for handle in loop.live] == [pytest.approx(101.02)]
    loop.fire()
    assert [name for name, _ in rings] == ["a", "b", "c"]
    assert [handle.when for handle in loop.live] == [pytest.approx(101.07)]
    loop.fire()
    assert [name for name, _ in rings] == ["a", "b", "c", "d"]


@pytest.mark.anyio
async def test_the_clock_of_a_running_loop_has_the_slack() -> None:
    assert current_clock()._slack == SLACK


def test_a_ring_answering_a_later_time_is_rung_again_then() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    alarm.later = [105.0]
    alarm.start(101.0)
    loop.fire()
    loop.fire()
    assert rings == [("a", 101.0), ("a", 105.0)]
    assert loop.live == []


def test_a_later_start_while_queued_touches_no_timer_and_rings_at_the_old_time() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    alarm.start(101.0)
    alarm.start(110.0)  # lazily: the ring at 101 is where the alarm answers its real time
    assert len(loop.handles) == 1
    assert len(clock) == 1
    loop.fire()
    assert rings == [("a", 101.0)]


def test_an_earlier_start_while_queued_rings_at_the_earlier_time_once() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    other = Recorder(clock, "b", rings)
    alarm.start(110.0)
    other.start(108.0)
    alarm.start(102.0)
    assert [handle.when for handle in loop.live] == [102.0]
    loop.fire()
    loop.fire()
    assert rings == [("a", 102.0), ("b", 108.0)]
    loop.fire()  # the alarm's old place comes up: it rang already and was not restarted
    assert rings == [("a", 102.0), ("b", 108.0)]
    assert loop.live == []
    assert len(clock) == 0


def test_every_alarm_started_earlier_at_once_rings_once_in_one_callback() -> None:
    # A hub draining ends every stream's sending at once: each alarm is started earlier
    # than its ping, all within one event-loop iteration.
    loop, clock, rings = _clock()
    alarms = [Recorder(clock, str(n), rings) for n in range(2000)]
    for n, alarm in enumerate(alarms):
        alarm.start(200.0 + n)
    for alarm in alarms:
        alarm.start(101.0)
    loop.fire()
    assert sorted(rings) == sorted((str(n), 101.0) for n in range(2000))
    # Their old places in the heap are dead now, and were swept out at once.
    assert len(clock) == 0
    assert len(rings) == 2000
    assert loop.live == []


def test_stopped_alarms_far_in_the_future_are_swept_out() -> None:
    # Streams that end leave their alarms at their old time (a ping an hour away): the heap
    # must not grow with every stream that ever ran.
    loop, clock, rings = _clock()
    for n in range(1000):
        alarm = Recorder(clock, str(n), rings)
        alarm.start(3700.0 + n)
        alarm.stop()
    assert len(clock) < 64
    keeper = Recorder(clock, "keeper", rings)
    keeper.start(150.0)
    keeper.stop()
    keeper.start(150.0)  # stopped and started again while queued: alive, not swept
    for n in range(200):
        other = Recorder(clock, f"o{n}", rings)
        other.start(3000.0)
        other.stop()
    loop.fire()
    assert rings == [("keeper", 150.0)]


def test_a_ring_from_an_early_entry_can_re_arm_earlier_than_the_old_place() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    alarm.start(150.0)
    alarm.start(101.0)
    alarm.later = [120.0]  # still before its place in the heap (150)
    loop.fire()
    loop.fire()
    assert rings == [("a", 101.0), ("a", 120.0)]


def test_a_stopped_alarm_does_not_ring_and_leaves_the_heap_at_its_time() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    alarm.start(101.0)
    alarm.stop()
    loop.fire()
    assert rings == []
    assert len(clock) == 0
    assert loop.live == []
    alarm.start(120.0)  # and it can be started again
    loop.fire()
    assert rings == [("a", 120.0)]


def test_a_ring_answering_a_time_already_past_is_rung_again_later_not_in_a_loop() -> None:
    loop, clock, rings = _clock()
    alarm = Recorder(clock, "a", rings)
    alarm.later = [50.0]  # in the past
    alarm.start(101.0)
    loop.fire()
    assert rings == [("a", 101.0)]  # not rung again within the same callback
    # Re-armed at the end of the tolerance (1 ms: uvloop fires timers that early).
    assert [handle.when for handle in loop.live] == [pytest.approx(101.001)]
    loop.fire()
    assert rings == [("a", 101.0), ("a", pytest.approx(101.001))]


def test_a_failing_ring_is_logged_and_the_other_alarms_still_ring(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, clock, rings = _clock()

    class Broken(Alarm):
        def ring(self, now: float) -> float | None:
            raise RuntimeError("boom")

    Broken(clock).start(101.0)
    Recorder(clock, "ok", rings).start(101.0)
    Recorder(clock, "later", rings).start(103.0)
    with caplog.at_level(logging.ERROR, logger="ssehub.response"):
        loop.fire()
    assert ("ok", 101.0) in rings
    assert "an alarm failed" in caplog.text
    loop.fire()  # the timer was armed again for what is left
    assert rings[-1] == ("later", 103.0)


def test_the_base_alarm_has_no_ring() -> None:
    _loop, clock, _rings = _clock()
    with pytest.raises(NotImplementedError):
        Alarm(clock).ring(0.0)


def test_an_alarm_at_infinity_schedules_no_timer() -> None:
    loop, clock, rings = _clock()
    Recorder(clock, "never", rings).start(math.inf)
    assert loop.handles == []


@pytest.mark.anyio
async def test_one_clock_per_running_loop(anyio_backend: Any) -> None:
    assert current_clock() is current_clock()
    assert (running_loop() is None) == (anyio_backend[0] == "trio")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend",
    [("asyncio", {"use_uvloop": False}), ("asyncio", {"use_uvloop": True}), ("trio", {})],
    ids=["asyncio", "uvloop", "trio"],
)
async def test_a_real_loop_rings_an_alarm_at_its_time(anyio_backend: Any) -> None:
    rang = anyio.Event()

    class Ringing(Alarm):
        def ring(self, now: float) -> float | None:
            self.at = now
            rang.set()
            return None

    alarm = Ringing(current_clock())
    due = anyio.current_time() + 0.01
    alarm.start(due)
    with anyio.fail_after(5):
        await rang.wait()
    assert alarm.at >= due - 1e-3


@pytest.mark.anyio
async def test_an_earlier_alarm_re_arms_the_one_timer_of_a_real_loop(anyio_backend: Any) -> None:
    # Under trio the timer is a system task sleeping until the clock's deadline: an alarm
    # started earlier than the armed time must move that deadline, not wait for it.
    rang: list[str] = []
    first = anyio.Event()

    class Named(Alarm):
        def __init__(self, name: str) -> None:
            super().__init__(current_clock())
            self.name = name

        def ring(self, now: float) -> float | None:
            rang.append(self.name)
            first.set()
            return None

    late, soon = Named("late"), Named("soon")
    late.start(anyio.current_time() + 30)
    soon.start(anyio.current_time() + 0.01)
    with anyio.fail_after(5):
        await first.wait()
    late.stop()
    assert rang == ["soon"]


def test_a_loop_that_is_gone_takes_its_clock_with_it() -> None:
    import asyncio
    import gc
    import weakref

    loops: list[weakref.ref[Any]] = []

    async def use() -> None:
        current_clock()
        loops.append(weakref.ref(asyncio.get_running_loop()))

    for _ in range(3):
        asyncio.run(use())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_idle_stream_is_not_woken_before_its_ping(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle connections cost no CPU: with a send timeout of 10 ms and a ping an hour away, an
    # idle stream's alarm must not ring every send timeout (that would be 100 wake-ups per
    # second per stream). It may ring once, for the deadline of its opening sends.
    from ssehub import EventSourceResponse
    from ssehub._response._pump import Pump
    from ssehub.testing import stream_asgi

    rings: list[float] = []
    ring = Pump.ring

    def counting_ring(self: Pump, now: float) -> float | None:
        rings.append(now)
        return ring(self, now)

    monkeypatch.setattr(Pump, "ring", counting_ring)

    async def idle() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"  # pragma: no cover

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(idle(), ping=3600, send_timeout=0.01)) as s:
            assert await s.receive_chunk() == b": ok\n\n"
            await anyio.sleep(0.2)  # twenty send timeouts of idleness
    assert len(rings) <= 1, rings


def test_a_trio_run_that_ended_takes_its_clock_and_timer_task_with_it() -> None:
    import gc
    import weakref

    import trio

    tokens: list[weakref.ref[Any]] = []

    async def use() -> None:
        # An alarm an hour away keeps the clock's timer task sleeping when the run ends.
        class Never(Alarm):
            def ring(self, now: float) -> float | None:  # pragma: no cover - never due
                return None

        Never(current_clock()).start(trio.current_time() + 3600)
        tokens.append(weakref.ref(trio.lowlevel.current_trio_token()))

    for _ in range(3):
        trio.run(use)
    gc.collect()
    assert [ref() for ref in tokens] == [None, None, None]


class _EndedSource:
    """A frame source that has ended: the pump sends the final body at once."""

    def take_frames(self) -> list[bytes] | None:
        return None

    def on_ready(self, callback: Callable[[], object] | None) -> None:  # pragma: no cover
        pass

    async def aclose(self) -> None:  # pragma: no cover
        pass


@pytest.mark.anyio
async def test_a_cut_that_never_lands_is_not_reported_as_a_timeout(anyio_backend: Any) -> None:
    # The alarm rings for the final send's deadline just as that send completes: the send is
    # not cancelled after all (trio delivers a cancellation at the next checkpoint, asyncio's
    # timeout on the next loop turn, and the pump's scope is left before either), so the body
    # went out whole and no SendTimeoutError may follow.
    from ssehub._response._pump import Pump

    pump: Pump

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message["more_body"]:
            assert pump.ring(anyio.current_time() + 3600) is None  # overdue: it cuts

    pump = Pump(
        send,  # type: ignore[arg-type]
        _EndedSource(),
        ping=0,
        ping_bytes=bytes,
        send_timeout=1.0,
        final_timeout=1.0,
    )
    await pump.run({"type": "http.response.start", "status": 200, "headers": []}, [])
    assert pump.sent_final
    assert not pump.timed_out
    assert not pump.cut


@pytest.mark.parametrize("fails", [False, True], ids=["stops", "raises"])
def test_a_ring_that_restarts_its_alarm_and_then_stops_leaves_the_count_exact(
    fails: bool,
) -> None:
    # Found by review: the entry such a ring adds is dead once the ring stops the alarm; left
    # uncounted, the dead count went negative and the sweep never ran again.
    loop, clock, _rings = _clock()

    class Restarting(Alarm):
        def ring(self, now: float) -> float | None:
            self.start(now + 10)
            if fails:
                raise RuntimeError("boom")
            return None

    alarm = Restarting(clock)
    alarm.start(101.0)
    for _ in range(200):
        loop.fire()
        alarm.start(loop.now + 1)
    live = 1 if alarm._active and alarm._at != math.inf else 0  # its entry at alarm._at
    assert clock._dead == len(clock) - live
