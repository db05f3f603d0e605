"""Byte and topic budgets in both backends (issue 18 item 1), through a real Broker.

Each test runs on the memory backend (asyncio and trio) and on a real Redis (asyncio; a unique
key prefix per test). What an event costs differs (memory: its size in this process; Redis: its
fields in a stream entry), so the budgets here are set in events' worth of each backend's own
cost, measured from a first event. For Redis the streams themselves are inspected too: the topic
stream is trimmed by bytes (its ``XLEN``), and the bytes hash matches the entries it holds.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis.asyncio
from backend_runs import ASYNCIO, TRIO
from redis_support import REDIS_URL, CleaningRedisBackend, require_redis, unique_prefix

from ssehub import EventTooLarge
from ssehub._clock import ManualClock
from ssehub.backends import Backend, MemoryBackend
from ssehub.backends._redis_budget import ENTRY_OVERHEAD, TOTAL_FIELD
from ssehub.backends.base import history_usage
from ssehub.backends.redis import RedisBackend
from ssehub.broker import Broker, Publication, Reset, ResetReason
from ssehub.broker.history import HistoryBudget

pytestmark = pytest.mark.anyio

Factory = Callable[[HistoryBudget], Backend]
KIB = 1024
EVENT = "x" * 10_000  # every event of these tests has this data
# An entry's size in each backend, to within this: ids and topic names differ a little.
SLACK = 64


def memory(budget: HistoryBudget) -> Backend:
    return MemoryBackend(budget=budget)


def on_redis(budget: HistoryBudget) -> Backend:
    require_redis()
    return CleaningRedisBackend(REDIS_URL, prefix=unique_prefix(), budget=budget)


parametrize = pytest.mark.parametrize(
    ("factory", "anyio_backend"),
    [
        pytest.param(memory, ASYNCIO, id="memory-asyncio"),
        pytest.param(memory, TRIO, id="memory-trio"),
        pytest.param(on_redis, ASYNCIO, id="redis-asyncio", marks=pytest.mark.redis),
    ],
)


async def cost_of_one(factory: Factory) -> int:
    """What one event of these tests costs in ``factory``'s backend (one publish, alone)."""
    async with Broker(factory(HistoryBudget()), clock=ManualClock()) as broker:
        await broker.publish("probe", EVENT)
        ((_, size),) = (await history_usage(broker.backend, ["probe"])).values()
        return size


def budget(
    one: int, *, per_topic: float | None = None, total: float = 1000, topics: int = 100
) -> HistoryBudget:
    """A budget in events' worth (``one`` is an event's cost); per topic: the total's."""
    return HistoryBudget(
        history_bytes=int((total if per_topic is None else per_topic) * one),
        history_total_bytes=int(total * one),
        history_topics=topics,
    )


async def first_item(broker: Broker, topic: str, last_event_id: str) -> object:
    with anyio.fail_after(10):
        async with broker.subscribe(topic, last_event_id) as subscription:
            return (await subscription.receive())[0]


@parametrize
async def test_a_topic_is_trimmed_to_its_bytes(factory: Factory) -> None:
    one = await cost_of_one(factory)
    async with Broker(factory(budget(one, per_topic=5.5)), clock=ManualClock()) as broker:
        events = [await broker.publish("big", EVENT) for _ in range(12)]
        usage = await history_usage(broker.backend, ["big"])
        assert usage["big"][0] == 5  # as many of the newest as fit in 5.5 events' worth
        assert 5 * (one - SLACK) <= usage["big"][1] <= 5.5 * one
        replay = await broker.backend.replay(["big"], events[-6].id)
        assert [e.id for e in replay.events] == [e.id for e in events[-5:]]
        # A subscriber whose resume point was evicted gets the reset signal.
        assert await first_item(broker, "big", events[0].id) == Reset(ResetReason.EXPIRED)


@parametrize
async def test_the_total_evicts_the_oldest_events_across_topics(factory: Factory) -> None:
    one = await cost_of_one(factory)
    async with Broker(factory(budget(one, total=10.5)), clock=ManualClock()) as broker:
        early = await broker.publish("early", "first")  # a resume point before everything
        quiet = await broker.publish("quiet", EVENT)
        busy = [await broker.publish("busy", EVENT) for _ in range(9)]
        # Over the budget now: the oldest events go first, whatever their topic.
        await broker.publish("busy", EVENT)
        sizes = await broker.backend.history_sizes(["quiet", "busy"])
        assert sizes == {"quiet": 0, "busy": 10}
        assert await first_item(broker, "quiet", early.id) == Reset(ResetReason.EXPIRED)
        replay = await broker.backend.replay(["busy"], quiet.id)
        assert replay.reset is None
        assert [e.id for e in replay.events][:9] == [e.id for e in busy]
        await broker.publish("other", EVENT)
        assert (await broker.backend.replay(["busy"], quiet.id)).reset is ResetReason.EXPIRED
        total = sum(size for _, size in (await history_usage(broker.backend)).values())
        assert total <= 10.5 * one


@parametrize
async def test_too_many_topics_evict_the_least_recently_published(factory: Factory) -> None:
    one = await cost_of_one(factory)
    clock = ManualClock()
    async with Broker(factory(budget(one, topics=3)), clock=clock) as broker:
        start = await broker.publish("t1", "1")
        # Milliseconds apart: Redis knows when a topic was last published to to the ms.
        for topic in ("t2", "t3", "t1", "t4"):
            clock.advance(0.005)
            await broker.publish(topic, topic)
        assert sorted(await broker.backend.history_sizes()) == ["t1", "t3", "t4"]
        assert await first_item(broker, "t2", start.id) == Reset(ResetReason.EXPIRED)


@parametrize
async def test_an_event_too_large_is_refused_before_anything_is_stored(factory: Factory) -> None:
    async with Broker(factory(HistoryBudget(max_event_size=KIB))) as broker:
        with pytest.raises(EventTooLarge):
            await broker.publish_many([Publication("t", "ok"), Publication("t", "x" * KIB)])
        assert await broker.backend.history_sizes(["t"]) == {"t": 0}
        await broker.publish("t", "x" * (KIB - 8))  # "data: " + "\n\n": exactly the limit
        assert await broker.backend.history_sizes(["t"]) == {"t": 1}


# -- Redis: the streams themselves ----------------------------------------------------------


def entry_size(fields: dict[bytes, bytes]) -> int:
    return ENTRY_OVERHEAD + sum(len(name) + len(value) for name, value in fields.items())


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", [ASYNCIO])
async def test_redis_trims_the_topic_stream_and_the_log_by_bytes() -> None:
    require_redis()
    one = await cost_of_one(on_redis)
    prefix = unique_prefix()
    backend = CleaningRedisBackend(
        REDIS_URL, prefix=prefix, budget=budget(one, per_topic=3.5, total=8.5)
    )
    base = f"ssehub:{{{prefix}}}:"
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        async with Broker(backend, clock=ManualClock()) as broker:
            for n in range(20):
                await broker.publish("big" if n % 2 else "other", EVENT)
            stream = await client.xrange(base + "t:big")
            assert len(stream) == 3  # by bytes: the count bound (1000) is far away
            counted = await client.hgetall(base + "bytes")
            assert int(counted[b"big"]) == sum(entry_size(fields) for _, fields in stream)
            topics = [b"big", b"other"]
            assert int(counted[TOTAL_FIELD.encode()]) == sum(int(counted[t]) for t in topics)
            assert int(counted[TOTAL_FIELD.encode()]) <= 8.5 * one
            # The log (each event once more, for readers catching up) has the total's bound.
            log = await client.xrange(base + "log")
            assert len(log) <= 9
            assert int(counted[b""]) == sum(entry_size(fields) for _, fields in log)
            assert int(counted[b""]) <= 8.5 * one
            # The oldest entry of each topic is scored, for eviction across topics.
            first_id = stream[0][0].decode()
            ms, seq = (int(part) for part in first_id.split("-"))
            assert await client.zscore(base + "oldest", "big") == ms * 1024 + seq
            # Forgetting a topic gives its bytes back.
            await broker.backend.forget(["big"])
            counted = await client.hgetall(base + "bytes")
            assert b"big" not in counted
            assert int(counted[TOTAL_FIELD.encode()]) == int(counted[b"other"])
            assert isinstance(backend, RedisBackend)
            await history_usage(backend)
            assert broker.statistics().history_bytes == int(counted[b"other"])
    finally:
        await client.aclose()


@parametrize
async def test_transient_events_reach_subscribers_and_keep_no_history(factory: Factory) -> None:
    # Mercure's subscription events: on a new topic each, kept in history they would push
    # real topics' history out of the topic budget.
    from ssehub.broker.transient import publish_transient

    async with Broker(factory(HistoryBudget(history_topics=2)), clock=ManualClock()) as broker:
        first = await broker.publish("real", "kept")
        await broker.publish("also-real", "kept too")
        listener = broker.subscribe("notice/0")
        sent = [await publish_transient(broker, f"notice/{i}", str(i)) for i in range(20)]
        with anyio.fail_after(5):
            assert await listener.receive() == [sent[0]]
        assert sent[0].event.data == "0"
        # Numbered as stored events are: ids and positions keep increasing.
        assert sent[0].position > first.position
        assert [e.position for e in sent] == sorted(e.position for e in sent)
        sizes = await broker.backend.history_sizes(["real", "also-real", "notice/0"])
        assert sizes == {"real": 1, "also-real": 1, "notice/0": 0}
        replay = await broker.backend.replay(["real"], first.id)
        assert replay.reset is None  # the real topic's history is whole
        # A client whose last event was a transient one resumes a real topic exactly.
        later = await broker.publish("real", "after the notices")
        replay = await broker.backend.replay(["real"], sent[-1].id)
        assert replay.reset is None
        assert [event.id for event in replay.events] == [later.id]
