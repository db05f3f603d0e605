"""Idempotent publishing on Redis: the publish script checks and records the keys in the same
atomic step as it appends, so a retry, or a concurrent duplicate from any process, stores nothing
new and answers the first id; a key that comes with another publication writes nothing at all.

Real Redis on 127.0.0.1:6379, one key prefix per test; asyncio only (redis-py's client).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis
from redis_support import REDIS_URL
from redis_support import redis_backend as backend

from ssehub import IdempotencyKeyReused, InvalidIdempotencyKey
from ssehub._clock import ManualClock
from ssehub.broker import Broker, Publication, StoredEvent, Subscription

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stored(prefix: str, topic: str) -> list[str]:
    """The data of every entry of ``topic``'s stream, straight from Redis."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, decode_responses=True)
    try:
        entries: Any = client.xrange(f"ssehub:{{{prefix}}}:t:{topic}")
        return [fields.get("d", "") for _, fields in entries]
    finally:
        client.close()


def log_length(prefix: str) -> int:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        return int(client.xlen(f"ssehub:{{{prefix}}}:log"))
    finally:
        client.close()


async def drain(subscription: Subscription, until: str) -> list[str]:
    seen: list[str] = []
    with anyio.fail_after(10):
        while until not in seen:
            for item in await subscription.receive():
                assert isinstance(item, StoredEvent), item
                assert item.event.data is not None
                seen.append(item.event.data)
    return seen


async def test_the_same_key_twice_stores_one_event(broker: Broker, prefix: str) -> None:
    async with broker.subscribe("orders") as subscription:
        first = await broker.publish("orders", {"n": 7}, event="created", idempotency_key="k-1")
        again = await broker.publish("orders", {"n": 7}, event="created", idempotency_key="k-1")
        assert again.id == first.id
        assert again.position == first.position
        assert (again.topics, again.event.event, again.event.data) == (
            ("orders",),
            "created",
            '{"n":7}',
        )
        assert stored(prefix, "orders") == ['{"n":7}']
        assert log_length(prefix) == 1
        await broker.publish("orders", "end")
        assert await drain(subscription, "end") == ['{"n":7}', "end"]


async def test_a_key_with_another_publication_writes_nothing(broker: Broker, prefix: str) -> None:
    first = await broker.publish(["a", "b"], "x", idempotency_key="k")
    for topics, data in [(["a", "b"], "y"), (["a"], "x"), (["c"], "x")]:
        with pytest.raises(IdempotencyKeyReused):
            await broker.publish(topics, data, idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        await broker.publish(["a", "b"], "x", private=True, idempotency_key="k")
    assert (stored(prefix, "a"), stored(prefix, "b"), stored(prefix, "c")) == (["x"], ["x"], [])
    assert log_length(prefix) == 1
    assert (await broker.publish(["a", "b"], "x", idempotency_key="k")).id == first.id


async def test_a_batch_with_a_key_per_item(broker: Broker, prefix: str) -> None:
    batch = [
        Publication("t", "one", idempotency_key="b-1"),
        Publication("t", "two", idempotency_key="b-2"),
        Publication("t", "plain"),
        Publication("t", "one", idempotency_key="b-1"),
    ]
    first = await broker.publish_many(batch)
    assert first[3].id == first[0].id
    assert stored(prefix, "t") == ["one", "two", "plain"]

    # The whole batch again: only the item without a key is new.
    again = await broker.publish_many(batch)
    assert [e.id for e in again[:2]] == [e.id for e in first[:2]]
    assert again[3].id == first[0].id
    assert stored(prefix, "t") == ["one", "two", "plain", "plain"]

    # Every item repeated: Redis is not written at all ("last" stays the newest id).
    repeated = await broker.publish_many([batch[1], batch[0]])
    assert [e.id for e in repeated] == [first[1].id, first[0].id]
    assert stored(prefix, "t") == ["one", "two", "plain", "plain"]

    # A conflict in any item: nothing of the batch is written.
    with pytest.raises(IdempotencyKeyReused):
        await broker.publish_many(
            [
                Publication("t", "new", idempotency_key="b-3"),
                Publication("t", "z", idempotency_key="b-2"),
            ]
        )
    with pytest.raises(IdempotencyKeyReused):
        await broker.publish_many(
            [
                Publication("t", "p", idempotency_key="b-4"),
                Publication("t", "q", idempotency_key="b-4"),
            ]
        )
    assert stored(prefix, "t") == ["one", "two", "plain", "plain"]
    assert log_length(prefix) == 4
    # Ids keep increasing after repeats: the next event is newer than every stored one.
    after = await broker.publish("t", "after")
    assert after.position > again[2].position


async def test_concurrent_duplicates_store_one_event(prefix: str) -> None:
    # Two brokers on one prefix are two hub processes; 20 publishes of one key race.
    async with (
        Broker(backend(prefix)) as one,
        Broker(backend(prefix)) as two,
        one.subscribe("t") as subscription,
    ):
        ids: list[str] = []

        async def publish(broker: Broker) -> None:
            ids.append((await broker.publish("t", "x", idempotency_key="same")).id)

        async with anyio.create_task_group() as tasks:
            for i in range(20):
                tasks.start_soon(publish, (one, two)[i % 2])
        assert len(ids) == 20
        assert len(set(ids)) == 1
        assert stored(prefix, "t") == ["x"]
        await one.publish("t", "end")
        assert await drain(subscription, "end") == ["x", "end"]


async def test_a_key_is_remembered_for_the_history_age(prefix: str) -> None:
    clock = ManualClock()
    async with Broker(backend(prefix, history_ttl=60.0), clock=clock) as broker:
        first = await broker.publish("t", "x", idempotency_key="k")
        clock.advance(59)
        assert (await broker.publish("t", "x", idempotency_key="k")).id == first.id
        clock.advance(2)
        second = await broker.publish("t", "x", idempotency_key="k")
        assert second.id != first.id
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            # The record and its sorted set expire with the age bound if keyed publishing stops.
            ttl = client.pttl(f"ssehub:{{{prefix}}}:idem")
            assert 0 < ttl <= 60_000
            assert 0 < client.pttl(f"ssehub:{{{prefix}}}:idemt") <= 60_000
        finally:
            client.close()


async def test_keys_are_bounded_by_the_log_size(prefix: str) -> None:
    async with Broker(backend(prefix, history_size=5, log_size=20)) as broker:
        for i in range(60):
            await broker.publish_many([Publication("t", f"{i}", idempotency_key=f"k{i}")])
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            assert client.hlen(f"ssehub:{{{prefix}}}:idem") == 20
            assert client.zcard(f"ssehub:{{{prefix}}}:idemt") == 20
            assert client.hexists(f"ssehub:{{{prefix}}}:idem", "k59")
            assert not client.hexists(f"ssehub:{{{prefix}}}:idem", "k39")
        finally:
            client.close()


async def test_publishes_without_keys_touch_no_key_records(broker: Broker, prefix: str) -> None:
    await broker.publish("t", "x")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        assert client.exists(f"ssehub:{{{prefix}}}:idem", f"ssehub:{{{prefix}}}:idemt") == 0
    finally:
        client.close()


async def test_invalid_keys_are_refused_before_redis(broker: Broker, prefix: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        await broker.publish("t", "x", idempotency_key="has space")
    assert stored(prefix, "t") == []
