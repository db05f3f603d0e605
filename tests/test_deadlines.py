"""Deadlines: callbacks at times on an injectable clock, from one task (``ssehub._deadlines``)."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import AsyncIterator

import anyio
import pytest

from ssehub._deadlines import Deadlines
from ssehub.testing import ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def running() -> AsyncIterator[tuple[ManualClock, Deadlines]]:
    clock = ManualClock()
    deadlines = Deadlines(clock)
    async with anyio.create_task_group() as group:
        group.start_soon(deadlines.run)
        yield clock, deadlines
        group.cancel_scope.cancel()


async def test_calls_come_in_order_of_time_when_the_clock_reaches_them(
    running: tuple[ManualClock, Deadlines],
) -> None:
    clock, deadlines = running
    calls: list[str] = []
    for name, when in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("a2", 10.0)]:
        deadlines.call_at(when, lambda name=name: calls.append(name))
    await anyio.wait_all_tasks_blocked()
    assert clock.sleepers == 1  # one task sleeping until the earliest time, no polling
    clock.advance(9.9)
    await anyio.wait_all_tasks_blocked()
    assert calls == []
    clock.advance(0.1)
    await anyio.wait_all_tasks_blocked()
    assert calls == ["a", "a2"]  # equal times keep the order they were added in
    clock.advance(20)
    await anyio.wait_all_tasks_blocked()
    assert calls == ["a", "a2", "b", "c"]
    assert len(deadlines) == 0
    assert clock.sleepers == 0  # idle: waiting for the next call_at, not on the clock


async def test_an_earlier_call_wakes_the_task_sleeping_until_a_later_one(
    running: tuple[ManualClock, Deadlines],
) -> None:
    clock, deadlines = running
    calls: list[str] = []
    deadlines.call_at(100.0, lambda: calls.append("late"))
    await anyio.wait_all_tasks_blocked()
    deadlines.call_at(5.0, lambda: calls.append("soon"))
    await anyio.wait_all_tasks_blocked()
    clock.advance(5)
    await anyio.wait_all_tasks_blocked()
    assert calls == ["soon"]


async def test_a_time_already_past_is_called_at_once(
    running: tuple[ManualClock, Deadlines],
) -> None:
    clock, deadlines = running
    clock.advance(50)
    called = anyio.Event()
    deadlines.call_at(10.0, called.set)
    with anyio.fail_after(5):
        await called.wait()


async def test_a_cancelled_call_is_not_made_and_cancel_is_idempotent(
    running: tuple[ManualClock, Deadlines],
) -> None:
    clock, deadlines = running
    calls: list[str] = []
    first = deadlines.call_at(10.0, lambda: calls.append("cancelled"))
    deadlines.call_at(10.0, lambda: calls.append("kept"))
    deadlines.cancel(first)
    deadlines.cancel(first)
    clock.advance(10)
    await anyio.wait_all_tasks_blocked()
    assert calls == ["kept"]
    deadlines.cancel(first)  # after its time: nothing happens
    assert len(deadlines) == 0


async def test_cancelled_calls_far_ahead_are_swept_out() -> None:
    # Streams that end early leave their expiry an hour away: the heap must not keep them all.
    deadlines = Deadlines(ManualClock())
    for _ in range(5000):
        deadlines.cancel(deadlines.call_at(3600.0, lambda: None))
    assert len(deadlines) < 1024


async def test_a_failing_callback_is_logged_and_the_others_are_still_called(
    running: tuple[ManualClock, Deadlines], caplog: pytest.LogCaptureFixture
) -> None:
    clock, deadlines = running
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    deadlines.call_at(1.0, broken)
    deadlines.call_at(1.0, lambda: calls.append("after"))
    deadlines.call_at(2.0, lambda: calls.append("later"))
    with caplog.at_level(logging.ERROR, logger="ssehub"):
        clock.advance(2)
        await anyio.wait_all_tasks_blocked()
    assert calls == ["after", "later"]
    assert "a deadline callback failed" in caplog.text


async def test_a_callback_may_cancel_another_deadline_due_at_the_same_time(
    running: tuple[ManualClock, Deadlines],
) -> None:
    clock, deadlines = running
    calls: list[str] = []
    # Enough cancelled entries that the callback's cancel compacts the heap mid-run.
    stale = [deadlines.call_at(999.0, lambda: None) for _ in range(1500)]
    for entry in stale[:1023]:
        deadlines.cancel(entry)
    second = deadlines.call_at(5.0, lambda: calls.append("second"))

    def first() -> None:
        calls.append("first")
        deadlines.cancel(second)
        deadlines.cancel(stale[1023])

    deadlines.call_at(4.0, first)
    deadlines.call_at(5.0, lambda: calls.append("third"))
    clock.advance(5)
    await anyio.wait_all_tasks_blocked()
    assert calls == ["first", "third"]
    # The sweep left the 477 far ones; one of them was cancelled after it.
    assert len(deadlines) == 1500 - 1023


async def test_a_call_made_leaves_no_reference_to_its_callback(
    running: tuple[ManualClock, Deadlines],
) -> None:
    # The task waits for hours between calls: its frame must not keep the last callback (a
    # listener's, a subscription's) alive.
    clock, deadlines = running

    class Callback:
        def __call__(self) -> None:
            pass

    callback = Callback()
    alive = weakref.ref(callback)
    deadlines.call_at(1.0, callback)
    del callback
    clock.advance(1)
    await anyio.wait_all_tasks_blocked()
    gc.collect()
    assert alive() is None
