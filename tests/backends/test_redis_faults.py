"""Faults: each test runs its own redis-server and stops, kills and restarts it on one port.

What must hold (issue "Scale out", section 2): subscriptions stay open while Redis is away; the
reader reconnects with backoff and resumes after the last id it delivered, so nothing Redis
accepted is lost to connected subscribers; publishing while Redis is down raises
:class:`~ssehub.BackendUnavailable` (never a silent drop) and ``healthy`` turns false.

asyncio only: redis-py's client does not run on trio.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis_support import RedisServer

from ssehub import BackendUnavailable
from ssehub._clock import ManualClock
from ssehub.backends.redis import RedisBackend
from ssehub.broker import Broker, ResetReason, StoredEvent, Subscription

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()


async def stop(server: RedisServer, *, save: bool) -> None:
    # In a thread, so the event loop keeps running and sees the connections close, as it would
    # in production (a blocked loop would find out only when it next used each connection).
    await anyio.to_thread.run_sync(lambda: server.stop(save=save))


def make_broker(server: RedisServer) -> Broker:
    # The broker's clock only ages history here; the reader's backoff runs on real time.
    backend = RedisBackend(server.url, prefix="faults", history_size=1000, socket_timeout=2)
    return Broker(backend)


async def receive_data(subscription: Subscription, count: int) -> list[str]:
    """Receive ``count`` events and return their data (notices would fail the test)."""
    data: list[str] = []
    with anyio.fail_after(15):  # covers the reader's backoff (at most 5 s per attempt)
        while len(data) < count:
            for item in await subscription.receive():
                assert isinstance(item, StoredEvent), item
                assert item.event.data is not None
                data.append(item.event.data)
    return data


async def test_publish_while_down_fails_and_streams_survive_a_restart(
    server: RedisServer,
) -> None:
    async with make_broker(server) as broker, broker.subscribe("t") as subscription:
        backend = broker.backend
        assert isinstance(backend, RedisBackend)
        for i in range(3):
            await broker.publish("t", f"before {i}")
        assert await receive_data(subscription, 3) == ["before 0", "before 1", "before 2"]

        await stop(server, save=True)  # a planned restart that keeps the data
        with pytest.raises(BackendUnavailable):
            await broker.publish("t", "while down")
        assert not backend.healthy
        reconnects = backend.reconnects

        await anyio.to_thread.run_sync(server.start)
        # Publish at once, while the reader is still backing off: these events exist only in
        # Redis until the reader comes back and reads after its last id.
        for i in range(5):
            await broker.publish("t", f"after {i}")
        assert await receive_data(subscription, 5) == [f"after {i}" for i in range(5)]
        assert backend.reconnects > reconnects
        assert backend.healthy
        assert subscription.reset is None


async def test_killed_redis_loses_its_data_but_not_the_streams(server: RedisServer) -> None:
    async with make_broker(server) as broker, broker.subscribe(["t", "u"]) as subscription:
        first = await broker.publish("t", "one")
        assert await receive_data(subscription, 1) == ["one"]

        await anyio.to_thread.run_sync(server.kill)  # no snapshot: Redis comes back empty
        with pytest.raises(BackendUnavailable):
            await broker.publish("u", "lost")
        await anyio.to_thread.run_sync(server.start)

        again = await broker.publish(["t", "u"], "two")
        assert await receive_data(subscription, 1) == ["two"]
        assert again.position > first.position  # ids keep increasing for open streams
        # The old id belongs to data Redis no longer has: an honest reset, not a silent gap.
        replay = await broker.backend.replay(["t"], first.id)
        assert replay.reset is ResetReason.UNKNOWN


async def test_two_hubs_keep_streaming_through_a_restart(server: RedisServer) -> None:
    clock = ManualClock()
    backend_a = RedisBackend(server.url, prefix="two", socket_timeout=2)
    backend_b = RedisBackend(server.url, prefix="two", socket_timeout=2)
    async with (
        Broker(backend_a, clock=clock) as hub_a,
        Broker(backend_b, clock=clock) as hub_b,
        hub_b.subscribe("t") as on_b,
    ):
        await hub_a.publish("t", "a0")
        assert await receive_data(on_b, 1) == ["a0"]
        await stop(server, save=True)
        await anyio.to_thread.run_sync(server.start)
        for i in range(1, 4):
            await hub_a.publish("t", f"a{i}")
        assert await receive_data(on_b, 3) == ["a1", "a2", "a3"]
