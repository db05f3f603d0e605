"""Byte budgets of the in-memory history (issue 18 item 1): what publishers can make it hold.

History is bounded per topic by count, age and bytes, across topics by bytes (the oldest events
go first, whatever their topic) and by the number of topics; an event over ``max_event_size`` is
refused before anything is stored; a subscriber whose resume point was evicted gets the reset
notice. Memory is measured with ``tracemalloc``, never inferred.
"""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest

from ssehub import ConfigurationError, EventTooLarge
from ssehub._clock import ManualClock
from ssehub.backends import MemoryBackend
from ssehub.broker import Broker, Publication, Reset, ResetReason, StoredEvent
from ssehub.broker.history import (
    EVENT_OVERHEAD,
    History,
    HistoryBudget,
    HistoryPool,
    event_cost,
)
from ssehub.wire import ServerSentEvent

pytestmark = pytest.mark.anyio

KIB = 1024
MIB = 1024 * KIB


def stored(n: int, topics: tuple[str, ...], data: str, timestamp: float = 0.0) -> StoredEvent:
    return StoredEvent(str(n), topics, ServerSentEvent(data, id=str(n)), timestamp, (n,))


def budget(**bounds: int) -> HistoryBudget:
    """A budget with only ``bounds`` in the way (64 MiB for the byte bounds not given)."""
    total = bounds.get("history_total_bytes", 64 * MIB)
    values = {"history_bytes": min(64 * MIB, total), "history_total_bytes": total, **bounds}
    return HistoryBudget(**values)


async def first_item(broker: Broker, topics: str | list[str], last_event_id: str) -> object:
    with anyio.fail_after(5):
        async with broker.subscribe(topics, last_event_id) as subscription:
            items = await subscription.receive()
    return items[0] if items else None


# -- the cost of an event ----------------------------------------------------------------------


def test_event_cost_is_what_it_takes_in_memory() -> None:
    # Text costs twice (the data and its encoded copy), plus a fixed overhead.
    small = event_cost(stored(1, ("t",), "x"))
    large = event_cost(stored(1, ("t",), "x" * 100_000))
    assert small > EVENT_OVERHEAD
    assert abs(large - small - 200_000) < 100

    tracemalloc.start()
    try:
        history = History(10_000, 3600.0, budget())
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 2001):
            history.append(stored(n, ("topic",), f"{n:08d}" * 64))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The count is an upper bound of what the events really take, and not a loose one.
    assert 0.7 * history.bytes < used <= history.bytes, (used, history.bytes)


def test_budget_bounds_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_event_size"):
        HistoryBudget(max_event_size=0)
    with pytest.raises(ConfigurationError, match="history_topics"):
        HistoryBudget(history_topics=True)
    with pytest.raises(ConfigurationError, match="must not exceed"):
        HistoryBudget(history_bytes=2 * MIB, history_total_bytes=MIB)
    with pytest.raises(ConfigurationError):
        HistoryPool(0)


# -- the largest event -------------------------------------------------------------------------


async def test_an_event_over_max_event_size_is_refused_and_nothing_is_stored() -> None:
    limit = 10 * KIB
    backend = MemoryBackend(budget=HistoryBudget(max_event_size=limit))
    async with Broker(backend) as broker:
        fits = "a" * (limit - len("data: \n\n"))  # exactly the limit once encoded
        ok = await broker.publish("t", fits)
        assert len(ok.event.encode()) > limit  # the id line does not count
        with pytest.raises(EventTooLarge) as raised:
            await broker.publish("t", fits + "a")
        assert raised.value.limit == limit
        # Line breaks grow on the wire (each becomes "\ndata: "): the encoded size counts.
        with pytest.raises(EventTooLarge):
            await broker.publish("t", "\n" * (limit // 6))
        # A batch with one event too large stores nothing.
        with pytest.raises(EventTooLarge):
            await broker.publish_many([Publication("t", "small"), Publication("t", fits * 2)])
        assert await backend.history_sizes(["t"]) == {"t": 1}
        assert broker.statistics().published == 1


# -- per topic ---------------------------------------------------------------------------------


async def test_a_topic_keeps_at_most_history_bytes_oldest_first() -> None:
    limit = 100 * KIB
    backend = MemoryBackend(budget=budget(history_bytes=limit))
    async with Broker(backend, clock=ManualClock()) as broker:
        events = [await broker.publish("big", "b" * 20_000) for _ in range(20)]
        small = await broker.publish("small", "s")
        ((_, count, bytes_),) = [
            (name, count, bytes_)
            for name, (count, bytes_) in (await backend.history_usage(["big"])).items()
        ]
        cost = event_cost(events[-1])
        assert count == limit // cost  # as many of the newest as fit
        assert bytes_ == count * cost <= limit
        replay = await backend.replay(["big"], events[-count - 1].id)
        assert replay.events == events[-count:]
        # A subscriber whose resume point was evicted gets the reset notice, then live events.
        assert await first_item(broker, "big", events[0].id) == Reset(ResetReason.EXPIRED)
        # Other topics are untouched.
        assert (await backend.replay(["small"], events[0].id)).events == [small]


async def test_a_topic_keeps_its_newest_event_even_when_it_alone_is_larger() -> None:
    backend = MemoryBackend(budget=budget(history_bytes=KIB))
    async with Broker(backend) as broker:
        await broker.publish("t", "a" * 5000)
        last = await broker.publish("t", "b" * 5000)
        assert await backend.history_usage(["t"]) == {"t": (1, event_cost(last))}


# -- across topics -----------------------------------------------------------------------------


async def test_total_bytes_evict_the_oldest_events_whatever_their_topic() -> None:
    per_event = event_cost(stored(1, ("busy",), "x" * 10_000))
    backend = MemoryBackend(budget=budget(history_total_bytes=10 * per_event + per_event // 2))
    async with Broker(backend, clock=ManualClock()) as broker:
        start = backend.last_id  # the id before any event: a resume from it replays everything
        quiet = await broker.publish("quiet", "x" * 10_000)  # the oldest of all
        busy = [await broker.publish("busy", "x" * 10_000) for _ in range(9)]
        assert backend.history_bytes == sum(map(event_cost, [quiet, *busy]))
        newest = await broker.publish("busy", "x" * 10_000)
        # One event had to go: the oldest, from the quiet topic, not the busy topic's oldest.
        assert await backend.history_sizes(["quiet", "busy"]) == {"quiet": 0, "busy": 10}
        assert backend.history_bytes == sum(map(event_cost, [*busy, newest]))
        assert await first_item(broker, "quiet", start) == Reset(ResetReason.EXPIRED)
        assert (await backend.replay(["busy"], start)).events == [*busy, newest]  # all there
        # The next goes from the busy topic's head.
        await broker.publish("other", "x" * 10_000)
        assert (await backend.replay(["busy"], start)).reset is ResetReason.EXPIRED
        assert (await backend.replay(["busy"], busy[0].id)).events == [*busy[1:], newest]
        assert broker.statistics().history_bytes == backend.history_bytes


async def test_an_event_under_several_topics_counts_once_in_the_total() -> None:
    backend = MemoryBackend(budget=budget())
    async with Broker(backend) as broker:
        event = await broker.publish(["a", "b", "c"], "x" * 1000)
        assert backend.history_bytes == event_cost(event)
        usage = await backend.history_usage()
        assert usage == {topic: (1, event_cost(event)) for topic in "abc"}
        info = {item.topic: item for item in await broker.topics()}
        assert info["b"].history_bytes == event_cost(event)


async def test_too_many_topics_evict_the_one_published_to_least_recently() -> None:
    backend = MemoryBackend(budget=budget(history_topics=3))
    async with Broker(backend) as broker:
        first = await broker.publish("t1", "1")
        await broker.publish("t2", "2")
        await broker.publish("t3", "3")
        await broker.publish("t1", "1 again")  # t1 is now the most recent
        await broker.publish("t4", "4")  # t2 goes, whole
        assert sorted(await backend.history_sizes()) == ["t1", "t3", "t4"]
        # Its subscribers resuming get the reset; the others resume exactly.
        assert await first_item(broker, "t2", first.id) == Reset(ResetReason.EXPIRED)
        assert (await backend.replay(["t1"], first.id)).reset is None


async def test_age_still_evicts_across_topics() -> None:
    clock = ManualClock()
    backend = MemoryBackend(history_ttl=10.0, budget=budget())
    async with Broker(backend, clock=clock) as broker:
        old = await broker.publish("a", "old")
        await broker.publish("a", "old too")
        clock.advance(11.0)
        new = await broker.publish("b", "new")
        assert await backend.history_sizes() == {"b": 1}
        assert backend.history_bytes == event_cost(new)
        assert (await backend.replay(["a"], old.id)).reset is ResetReason.EXPIRED


# -- evicted events are freed at once (they were kept in batches of up to 256 per topic) -------


@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_evicted_events_are_freed_at_once(bound: str) -> None:
    size = 200_000
    if bound == "count":
        history = History(10, 3600.0, budget())
    else:  # ten such events per topic
        one = event_cost(stored(1, ("t",), "x" * size))
        history = History(10_000, 3600.0, budget(history_bytes=10 * one + 100))
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 301):
            history.append(stored(n, ("t",), chr(65 + n % 26) * size))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert history.size("t") == 10
    # Ten events (text and encoded copy: ~4 MB), never the ~100 MB of 256 evicted ones.
    assert held < 12 * 2 * size, held


# -- a pool shared by several histories (a registry's channels) --------------------------------


def test_a_pool_evicts_the_oldest_event_of_all_its_histories() -> None:
    one = event_cost(stored(1, ("t",), "x" * 1000))
    pool = HistoryPool(3 * one)
    first, second = History(100, 3600.0, pool=pool), History(100, 3600.0, pool=pool)
    first.append(stored(1, ("t",), "x" * 1000, timestamp=1.0))
    second.append(stored(1, ("t",), "x" * 1000, timestamp=2.0))
    first.append(stored(2, ("t",), "x" * 1000, timestamp=3.0))
    assert pool.bytes == 3 * one
    second.append(stored(2, ("t",), "x" * 1000, timestamp=4.0))
    # The oldest of both went: the first history's event of time 1.0.
    assert (first.size("t"), second.size("t")) == (1, 2)
    assert first.after(["t"], (0,)) is None  # its resume from before it: expired
    assert pool.bytes == first.bytes + second.bytes == 3 * one
    second.forget(["t"])
    assert pool.bytes == first.bytes == one


async def test_an_event_over_the_total_budget_is_kept_so_a_retry_finds_its_key() -> None:
    # Found in review: an event costing more than history_total_bytes was evicted as it was
    # stored, its idempotency key with it, and the client's retry stored it a second time.
    budget = HistoryBudget(history_bytes=100_000, history_total_bytes=100_000)
    async with Broker(MemoryBackend(budget=budget)) as broker:
        first = await broker.publish("t", "x" * 60_000, idempotency_key="k1")
        retry = await broker.publish("t", "x" * 60_000, idempotency_key="k1")
        assert retry.id == first.id
        assert broker.statistics().history_bytes > budget.history_total_bytes  # kept, alone
