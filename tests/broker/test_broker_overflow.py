"""Bounded subscriber queues under each overflow policy, and the statistics they keep."""

from __future__ import annotations

import json

import anyio
import pytest

from ssehub import SlowConsumer
from ssehub.broker import (
    Broker,
    BrokerStatistics,
    Dropped,
    EndReason,
    StoredEvent,
    SubscriptionStatistics,
)

pytestmark = pytest.mark.anyio


async def test_disconnect_sheds_slow_consumer_and_spares_others() -> None:
    async with Broker(queue_size=3) as broker:
        slow = broker.subscribe("t")
        fast = broker.subscribe("t")
        stored: list[StoredEvent] = []
        for i in range(3):
            stored.append(await broker.publish("t", str(i)))
            with anyio.fail_after(5):
                assert await fast.receive() == [stored[-1]]
        assert slow.statistics() == SubscriptionStatistics(3, 3, 0, 0)
        stored.append(await broker.publish("t", "overflow"))
        assert slow.end_reason is EndReason.SHED
        assert slow.statistics().queued == 0  # memory is freed at once
        with anyio.fail_after(5):
            assert [item.encode() for item in await slow.receive()] == []
            assert [item.encode() for item in await slow.receive()] == []
            assert await fast.receive() == [stored[-1]]
        # history_bytes is a gauge of the history, not a counter of this test's doing
        assert broker.statistics()._replace(history_bytes=0) == BrokerStatistics(
            topics=1, subscribers=1, published=4, delivered=4, dropped=3, shed=1
        )
        # The shed client resumes from history with the last id it processed: nothing lost.
        resumed = broker.subscribe("t", last_event_id=stored[0].id)
        with anyio.fail_after(5):
            assert await resumed.receive() == stored[1:]


async def test_disconnect_iteration_raises_slow_consumer() -> None:
    async with Broker(queue_size=1) as broker:
        sub = broker.subscribe("t")
        await broker.publish("t", "a")
        await broker.publish("t", "b")
        with anyio.fail_after(5), pytest.raises(SlowConsumer):
            await sub.__anext__()


async def test_drop_oldest_marks_the_gap() -> None:
    async with Broker(queue_size=3, overflow="drop_oldest") as broker:
        sub = broker.subscribe("t")
        stored = [await broker.publish("t", str(i)) for i in range(5)]
        assert sub.end_reason is None
        with anyio.fail_after(5):
            items = await sub.receive()
        assert items == [Dropped(2), *stored[2:]]
        assert sub.statistics() == SubscriptionStatistics(0, 3, 2, 3)
        more = [await broker.publish("t", str(i)) for i in range(2)]
        with anyio.fail_after(5):
            frames = [item.encode() for item in await sub.receive()]
        assert frames == [event.encode() for event in more]
        assert broker.statistics().dropped == 2
        assert broker.statistics().shed == 0


async def test_drop_oldest_notice_frame_format() -> None:
    async with Broker(queue_size=1, overflow="drop_oldest") as broker:
        sub = broker.subscribe("t")
        for i in range(4):
            last = await broker.publish("t", str(i))
        with anyio.fail_after(5):
            frames = [item.encode() for item in await sub.receive()]
    assert frames[0] == b'event: ssehub.dropped\ndata: {"dropped":3}\n\n'
    assert json.loads(frames[0].split(b"data: ")[1]) == {"dropped": 3}
    assert frames[1:] == [last.encode()]


async def test_block_makes_publish_wait_for_room() -> None:
    async with Broker(queue_size=2, overflow="block") as broker:
        sub = broker.subscribe("t")
        await broker.publish("t", "0")
        await broker.publish("t", "1")
        published = anyio.Event()

        async def third() -> None:
            await broker.publish("t", "2")
            published.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await anyio.wait_all_tasks_blocked()
            assert not published.is_set()  # waiting for room, nothing dropped
            assert sub.statistics().queued == 2
            with anyio.fail_after(5):
                first = await sub.receive()
                await published.wait()
                second = await sub.receive()
        assert [e.event.data for e in first + second] == ["0", "1", "2"]  # type: ignore[union-attr]
        assert sub.statistics().dropped == 0
        assert broker.statistics().shed == 0


async def test_block_publish_is_released_when_subscriber_closes() -> None:
    async with Broker(queue_size=1, overflow="block") as broker:
        sub = broker.subscribe("t")
        await broker.publish("t", "0")
        async with anyio.create_task_group() as tg:
            tg.start_soon(broker.publish, "t", "1")
            await anyio.wait_all_tasks_blocked()
            await sub.aclose()
        assert broker.statistics().published == 2


async def test_block_applies_to_publish_threadsafe() -> None:
    async with Broker(queue_size=1, overflow="block") as broker:
        sub = broker.subscribe("t")
        await broker.publish("t", "0")
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, broker.publish_threadsafe, "t", "1")
            await anyio.wait_all_tasks_blocked()
            assert broker.statistics().published == 1
            with anyio.fail_after(5):
                assert len(await sub.receive()) == 1
                assert len(await sub.receive()) == 1
        assert broker.statistics().published == 2


async def test_statistics_peak_and_delivered() -> None:
    async with Broker(queue_size=10) as broker:
        sub = broker.subscribe(["a", "b"])
        other = broker.subscribe("b")
        for i in range(4):
            await broker.publish("a", str(i))
        with anyio.fail_after(5):
            await sub.receive()
        await broker.publish("b", "x")
        assert sub.statistics() == SubscriptionStatistics(1, 4, 0, 4)
        assert other.statistics() == SubscriptionStatistics(1, 1, 0, 0)
        assert broker.statistics()[:8] == BrokerStatistics(2, 2, 5, 4, 0, 0)[:8]
        await sub.aclose()
        await other.aclose()
        assert broker.statistics()[:8] == BrokerStatistics(0, 0, 5, 4, 0, 0)[:8]


async def test_drop_oldest_before_the_replay_reports_no_gap_the_replay_filled() -> None:
    # Events dropped from the live queue while the Last-Event-ID replay was still to be fetched
    # are in the replay: the consumer gets them all and no Dropped notice.
    async with Broker(queue_size=2, overflow="drop_oldest") as broker:
        first = await broker.publish("t", "e0")
        sub = broker.subscribe("t", last_event_id=first.id)
        stored = [await broker.publish("t", f"e{i}") for i in range(1, 6)]
        # Not counted before the replay says whether they were lost: the counters are
        # Prometheus counters and must never go down.
        assert broker.statistics().dropped == 0
        await sub.prepare()
        with anyio.fail_after(5):
            assert await sub.receive() == stored
        assert sub.statistics() == SubscriptionStatistics(0, 2, 0, 5)
        assert broker.statistics().dropped == 0


async def test_drop_oldest_after_the_replay_still_reports_the_gap() -> None:
    async with Broker(queue_size=2, overflow="drop_oldest") as broker:
        first = await broker.publish("t", "e0")
        sub = broker.subscribe("t", last_event_id=first.id)
        await sub.prepare()
        stored = [await broker.publish("t", f"e{i}") for i in range(1, 6)]
        with anyio.fail_after(5):
            assert await sub.receive() == [Dropped(3), *stored[3:]]
        assert broker.statistics().dropped == 3


async def test_closing_an_unprepared_resume_counts_nothing_dropped() -> None:
    # Its client resumes from the same id again: nothing was lost, only not yet delivered.
    async with Broker() as broker:
        first = await broker.publish("t", "e0")
        sub = broker.subscribe("t", last_event_id=first.id)
        await broker.publish("t", "e1")
        sub.close()
        assert sub.statistics().dropped == 0
        assert broker.statistics().dropped == 0


async def test_block_holds_its_bound_under_many_concurrent_publishers() -> None:
    # The last room check and the store have no checkpoint between them: otherwise every
    # publisher that passed the check would store at once.
    async with Broker(queue_size=1, overflow="block") as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                for index in range(100):
                    group.start_soon(broker.publish, "t", str(index))
                await anyio.wait_all_tasks_blocked()
                assert sub.statistics().peak == 1
                received = 0
                while received < 100:
                    received += len(await sub.receive())
                    assert sub.statistics().peak == 1
