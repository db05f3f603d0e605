"""Idempotent publishing on the memory backend: a key names one publication while its event is in
history; a retry with it stores nothing and returns the first event; a key that comes back with
another publication is refused before anything is stored. On asyncio and trio.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from ssehub import IdempotencyKeyReused, InvalidIdempotencyKey
from ssehub._clock import ManualClock
from ssehub.backends.memory import MemoryBackend
from ssehub.broker import Broker, Publication, StoredEvent, Subscription

pytestmark = pytest.mark.anyio


def retained(broker: Broker, topic: str) -> int:
    backend = broker.backend
    assert isinstance(backend, MemoryBackend)
    return backend._history.size(topic)


def remembered_keys(broker: Broker) -> int:
    backend = broker.backend
    assert isinstance(backend, MemoryBackend)
    return len(backend._keys)


async def drain(subscription: Subscription, until: str) -> list[str]:
    """The data of every event received up to and including the one whose data is ``until``."""
    seen: list[str] = []
    with anyio.fail_after(5):
        while until not in seen:
            for item in await subscription.receive():
                assert isinstance(item, StoredEvent), item
                assert item.event.data is not None
                seen.append(item.event.data)
    return seen


async def test_the_same_key_twice_stores_one_event_and_returns_its_id() -> None:
    async with Broker() as broker, broker.subscribe("orders") as subscription:
        first = await broker.publish("orders", {"n": 7}, event="created", idempotency_key="k-1")
        again = await broker.publish("orders", {"n": 7}, event="created", idempotency_key="k-1")
        assert again.id == first.id
        assert again is first
        assert retained(broker, "orders") == 1
        await broker.publish("orders", "end")
        # Delivered once: the retry was not fanned out again.
        assert await drain(subscription, "end") == ['{"n":7}', "end"]


async def test_a_key_with_another_publication_is_refused_and_stores_nothing() -> None:
    async with Broker() as broker:
        first = await broker.publish(["a", "b"], "x", idempotency_key="k")
        cases: list[tuple[list[str], str, dict[str, Any]]] = [
            (["a", "b"], "y", {}),  # other data
            (["b", "a"], "x", {}),  # other topic order (the event lists its topics in order)
            (["a"], "x", {}),
            (["a", "b"], "x", {"event": "other"}),
            (["a", "b"], "x", {"retry": 10}),
            (["a", "b"], "x", {"private": True}),
        ]
        for topics, data, options in cases:
            with pytest.raises(IdempotencyKeyReused):
                await broker.publish(topics, data, idempotency_key="k", **options)
        assert (retained(broker, "a"), retained(broker, "b")) == (1, 1)
        assert (await broker.publish(["a", "b"], "x", idempotency_key="k")).id == first.id


async def test_a_batch_with_a_key_per_item() -> None:
    async with Broker() as broker, broker.subscribe("t") as subscription:
        batch = [
            Publication("t", "one", idempotency_key="b-1"),
            Publication("t", "two", idempotency_key="b-2"),
            Publication("t", "plain"),
            Publication("t", "one", idempotency_key="b-1"),  # the same publication, again
        ]
        first = await broker.publish_many(batch)
        assert first[3].id == first[0].id
        assert len({event.id for event in first}) == 3
        assert retained(broker, "t") == 3

        # A retry of the batch stores only the item without a key.
        again = await broker.publish_many(batch)
        assert [e.id for e in again[:2]] == [e.id for e in first[:2]]
        assert again[2].id != first[2].id
        assert retained(broker, "t") == 4

        # A conflict anywhere in a batch stores nothing of it.
        with pytest.raises(IdempotencyKeyReused):
            await broker.publish_many(
                [
                    Publication("t", "new", idempotency_key="b-3"),
                    Publication("t", "x", idempotency_key="b-2"),
                ]
            )
        with pytest.raises(IdempotencyKeyReused):
            await broker.publish_many(
                [
                    Publication("t", "p", idempotency_key="b-4"),
                    Publication("t", "q", idempotency_key="b-4"),
                ]
            )
        assert retained(broker, "t") == 4
        await broker.publish("t", "end")
        assert await drain(subscription, "end") == ["one", "two", "plain", "plain", "end"]


@pytest.mark.parametrize(
    "key",
    ["", " ", "a b", "é", "tab\there", "x" * 256, "\x00", 7, b"bytes"],
    ids=["empty", "space", "inner-space", "non-ascii", "tab", "too-long", "nul", "int", "bytes"],
)
async def test_invalid_keys_are_refused(key: object) -> None:
    async with Broker() as broker:
        with pytest.raises(InvalidIdempotencyKey):
            await broker.publish("t", "x", idempotency_key=key)  # type: ignore[arg-type]
        with pytest.raises(InvalidIdempotencyKey):
            await broker.publish_many([Publication("t", "x", idempotency_key=key)])  # type: ignore[arg-type]
        assert retained(broker, "t") == 0


async def test_the_longest_key_is_accepted() -> None:
    async with Broker() as broker:
        key = "".join(chr(c) for c in range(0x21, 0x7F)) * 3  # every visible ASCII character
        key = key[:255]
        first = await broker.publish("t", "x", idempotency_key=key)
        assert (await broker.publish("t", "x", idempotency_key=key)).id == first.id


async def test_a_key_is_forgotten_with_its_event_so_keys_stay_bounded() -> None:
    backend = MemoryBackend(history_size=3)
    async with Broker(backend) as broker:
        first = await broker.publish("t", "x", idempotency_key="old")
        for i in range(200):
            await broker.publish("t", f"e{i}", idempotency_key=f"k{i}")
        # Only the keys of the 3 retained events are left.
        assert remembered_keys(broker) == 3
        # The old event left the history: its key names nothing now, and publishes anew.
        again = await broker.publish("t", "x", idempotency_key="old")
        assert again.id != first.id


async def test_a_key_lives_while_its_event_is_in_any_of_its_topics() -> None:
    backend = MemoryBackend(history_size=2)
    async with Broker(backend) as broker:
        first = await broker.publish(["busy", "quiet"], "x", idempotency_key="k")
        for i in range(5):
            await broker.publish("busy", f"e{i}")
        assert retained(broker, "quiet") == 1  # still there
        assert (await broker.publish(["busy", "quiet"], "x", idempotency_key="k")).id == first.id
        await broker.publish("quiet", "q1")
        await broker.publish("quiet", "q2")  # now it left "quiet" too
        assert (await broker.publish(["busy", "quiet"], "x", idempotency_key="k")).id != first.id


async def test_a_key_expires_with_the_history_age() -> None:
    clock = ManualClock()
    async with Broker(history_ttl=60, clock=clock) as broker:
        first = await broker.publish("t", "x", idempotency_key="k")
        clock.advance(59)
        assert (await broker.publish("t", "x", idempotency_key="k")).id == first.id
        clock.advance(2)
        assert (await broker.publish("t", "x", idempotency_key="k")).id != first.id
        clock.advance(61)
        await broker.publish("other", "y")  # the periodic sweep forgets expired keys
        assert remembered_keys(broker) == 0


async def test_forgetting_a_topic_forgets_its_keys() -> None:
    backend = MemoryBackend()
    async with Broker(backend) as broker:
        await broker.publish("private-topic", "x", idempotency_key="k")
        backend.forget_now(["private-topic"])
        assert remembered_keys(broker) == 0


async def test_concurrent_publishes_with_one_key_store_one_event() -> None:
    async with Broker() as broker:
        ids: list[str] = []

        async def publish() -> None:
            ids.append((await broker.publish("t", "x", idempotency_key="same")).id)

        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(publish)
        assert len(set(ids)) == 1
        assert retained(broker, "t") == 1


async def test_publish_threadsafe_takes_a_key() -> None:
    async with Broker() as broker:
        result: list[str] = []

        def worker() -> None:
            result.extend(
                broker.publish_threadsafe("t", "x", idempotency_key="k").id for _ in range(2)
            )

        thread = threading.Thread(target=worker)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert len(set(result)) == 1
        assert retained(broker, "t") == 1
