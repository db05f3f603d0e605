"""10 000 connect/disconnect cycles leave no subscription, task or object behind."""

from __future__ import annotations

import gc

import anyio
import pytest

from ssehub.broker import Subscription
from ssehub.hub import HubSettings

from .conftest import hub_of, open_events, running_hub

pytestmark = pytest.mark.anyio

CYCLES = 10_000


def live_subscriptions() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Subscription))


async def test_connect_disconnect_cycles_leave_nothing_behind() -> None:
    async with running_hub(HubSettings(ping=3600)) as app:
        broker = hub_of(app).broker
        tasks_before = len(anyio.get_running_tasks())
        subscriptions_before = live_subscriptions()
        with anyio.fail_after(120):
            for n in range(CYCLES):
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
        stats = broker.statistics()
        assert stats.subscribers == 0
        assert stats.topics == 0
        assert len(anyio.get_running_tasks()) == tasks_before
        assert live_subscriptions() == subscriptions_before
