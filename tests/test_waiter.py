"""The subscription's one-shot waiter, on both backends."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from ssehub._waiter import waiter_factory
from ssehub.broker import Broker

pytestmark = pytest.mark.anyio


async def test_set_wakes_the_waiting_task() -> None:
    waiter = waiter_factory(anyio.lowlevel.current_token())()
    woken = anyio.Event()

    async def wait() -> None:
        await waiter.wait()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set()
            waiter.set()
            waiter.set()  # idempotent
    assert woken.is_set()


async def test_a_cancelled_wait_can_still_be_set_and_set_before_wait_returns_at_once() -> None:
    new = waiter_factory(anyio.lowlevel.current_token())
    waiter = new()
    with anyio.move_on_after(0.01) as scope:
        await waiter.wait()
    assert scope.cancel_called
    waiter.set()  # the wait was cancelled: nothing to wake, and no error
    early = new()
    early.set()
    with anyio.fail_after(5):
        await early.wait()


async def test_a_subscription_cancelled_while_waiting_loses_nothing() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.move_on_after(0.01):
            await sub.receive()
        stored = await broker.publish("t", "after the cancelled wait")
        with anyio.fail_after(5):
            assert await sub.receive() == [stored]
