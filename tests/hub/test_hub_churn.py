"""10 000 connect/disconnect cycles leave no subscription, task or object behind."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette

from ssehub._response._timers import current_clock
from ssehub.broker import Broker, Subscription
from ssehub.hub import HubSettings

from .conftest import hub_of, open_events, running_hub

pytestmark = pytest.mark.anyio

CYCLES = 10_000
WARM_UP = 200  # first cycles fill caches (regexes, header tables) that are not leaks
TRIO_STALE_DEADLINES = 1_000  # trio prunes its deadline heap past 1 000 + 2 x active entries


def live_subscriptions() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Subscription))


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def cycle(app: Starlette, broker: Broker, n: int) -> None:
    # Alternate topics and resume ids so every branch of subscribe/prepare is used.
    query = f"topic=t{n % 7}&topic=shared"
    headers = {"Last-Event-ID": "bogus!"} if n % 3 == 0 else {}
    async with open_events(app, query, headers) as stream:
        await stream.start()
        await stream.receive_chunk()  # the opening comment: the stream is live
        if n % 100 == 0:
            await broker.publish("shared", str(n))
        await stream.disconnect()
        await stream.wait_closed()


async def test_connect_disconnect_cycles_leave_nothing_behind(anyio_backend: Any) -> None:
    async with running_hub(HubSettings(ping=3600)) as app:
        broker = hub_of(app).broker
        current_clock()  # the loop's one timer (a task under trio) is not per stream
        tasks_before = len(anyio.get_running_tasks())
        subscriptions_before = live_subscriptions()
        with anyio.fail_after(120):
            for n in range(WARM_UP):
                await cycle(app, broker, n)
            objects_before = live_objects()
            for n in range(WARM_UP, WARM_UP + CYCLES):
                await cycle(app, broker, n)
        stats = broker.statistics()
        assert stats.subscribers == 0
        assert stats.topics == 0
        assert len(anyio.get_running_tasks()) == tasks_before
        assert live_subscriptions() == subscriptions_before
        # Memory: a leak of even one object per cycle would add 10 000. The history of
        # "shared" (100 events) and the log records are the only growth allowed, and under trio
        # the run's deadline heap: trio drops the entries of exited cancel scopes (the test's
        # own fail_after guards) lazily, once over 1 000 are stale, so up to 1 000 (a tuple and
        # a scope each) may still be there when counted.
        allowed = CYCLES // 10 + (2 * TRIO_STALE_DEADLINES if anyio_backend[0] == "trio" else 0)
        growth = live_objects() - objects_before
        assert growth < allowed, growth
