"""Presence, connect/disconnect hooks, maximum connection age with jitter, publishing from many
real threads, and the bounded cost of a ``Last-Event-ID`` lookup."""

from __future__ import annotations

import logging
import random
import threading

import anyio
import anyio.to_thread
import pytest

from ssehub import ConfigurationError
from ssehub.broker import Broker, EndReason, StoredEvent, Subscription, TopicInfo
from ssehub.broker import history as history_module
from ssehub.broker.history import History
from ssehub.testing import ManualClock
from ssehub.wire import ServerSentEvent

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------------------ presence


async def test_presence_counts_subscribers_per_topic() -> None:
    async with Broker() as broker:
        a1, a2 = broker.subscribe("a"), broker.subscribe("a")
        b = broker.subscribe("b")
        ab = broker.subscribe(["a", "b"])
        assert broker.subscriber_count("a") == 3
        assert broker.subscriber_count("b") == 2
        assert broker.subscriber_count(["a", "b"]) == 4  # ab counts once
        assert broker.subscriber_count("nobody") == 0
        assert broker.subscriber_count() == 4
        await broker.publish("a", "1")
        await broker.publish("c", "kept in history only")
        topics = await broker.topics()
        assert [info[:4] for info in topics] == [
            TopicInfo("a", 3, 1, 1)[:4],
            TopicInfo("b", 2, 0, 0)[:4],
            TopicInfo("c", 0, 1, 0)[:4],
        ]
        assert [info.history_bytes > 0 for info in topics] == [True, False, True]
        a1.close()
        ab.close()
        assert broker.subscriber_count("a") == 1
        assert broker.subscriber_count("b") == 1
        a2.close()
        b.close()
        assert broker.subscriber_count() == 0
        assert broker.statistics().topics == 0
        # Topics without subscribers are listed only while they keep history.
        assert [info.topic for info in await broker.topics()] == ["a", "c"]
        assert all(info.subscribers == 0 for info in await broker.topics())


# --------------------------------------------------------------------------------- hooks


async def test_hooks_see_every_subscription_once_with_its_end_reason() -> None:
    joined: list[Subscription] = []
    left: list[tuple[Subscription, EndReason | None]] = []
    async with Broker(
        queue_size=1,
        on_subscribe=joined.append,
        on_unsubscribe=lambda sub: left.append((sub, sub.end_reason)),
    ) as broker:
        closed = broker.subscribe("t")
        assert joined == [closed]
        assert left == []  # nothing ends at subscribe time
        slow = broker.subscribe("t")
        last = broker.subscribe(["t", "u"])
        closed.close()
        closed.close()  # idempotent: the hook is not called twice
        await broker.publish("t", "1")
        await broker.publish("t", "2")  # slow and last have a full queue of 1: shed
        assert joined == [closed, slow, last]
        assert left == [(closed, EndReason.CLOSED), (slow, EndReason.SHED), (last, EndReason.SHED)]
        reopened = broker.subscribe("t")
    assert left[-1] == (reopened, EndReason.BROKER_CLOSED)
    assert len(left) == len(joined) == 4


async def test_a_failing_hook_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(subscription: Subscription) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="ssehub.broker"):
        async with Broker(on_subscribe=broken, on_unsubscribe=broken) as broker:
            sub = broker.subscribe("t")
            stored = await broker.publish("t", "still delivered")
            with anyio.fail_after(5):
                assert await sub.receive() == [stored]
            sub.close()
            assert broker.subscriber_count() == 0
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)


# ------------------------------------------------------------------------- clean ends


@pytest.mark.parametrize("how", ["close", "broker_exit"])
async def test_iteration_ends_cleanly_after_pending_items(how: str) -> None:
    got: list[str | None] = []
    ended = anyio.Event()
    async with anyio.create_task_group() as group:
        async with Broker() as broker:
            sub = broker.subscribe("t")

            async def consume() -> None:
                async for item in sub:  # ends with StopAsyncIteration, not an error
                    assert isinstance(item, StoredEvent)
                    got.append(item.event.data)
                ended.set()

            group.start_soon(consume)
            await broker.publish("t", "1")
            await broker.publish("t", "2")
            if how == "close":
                sub.close()
        with anyio.fail_after(5):
            await ended.wait()
    assert got == ["1", "2"]  # what was queued before the end is still delivered
    assert sub.end_reason is (EndReason.CLOSED if how == "close" else EndReason.BROKER_CLOSED)


# ------------------------------------------------------------------ maximum connection age


async def _settle() -> None:
    # The reaper task runs once the clock wakes it; let it act before checking.
    await anyio.wait_all_tasks_blocked()


async def test_max_connection_age_with_jitter_spreads_deadlines() -> None:
    clock = ManualClock(1000.0)
    age, jitter, count = 100.0, 0.2, 200
    async with Broker(
        max_connection_age=age,
        max_connection_age_jitter=jitter,
        clock=clock,
        rng=random.Random(7),
    ) as broker:
        subs = [broker.subscribe("t") for _ in range(count)]
        deadlines = [sub.deadline for sub in subs]
        assert all(d is not None and 1080.0 <= d <= 1100.0 for d in deadlines)
        offsets = sorted(d - 1000.0 for d in deadlines if d is not None)
        # Spread over the whole jitter window, not bunched: every 2-second slice of it holds
        # some deadlines, and no second holds more than a tenth of the cohort.
        for start in range(80, 100, 2):
            assert any(start <= o < start + 2 for o in offsets), start
        for second in range(80, 100):
            assert sum(1 for o in offsets if second <= o < second + 1) <= count // 10
        await _settle()
        clock.advance(79.9)
        await _settle()
        assert broker.subscriber_count() == count
        ended_order: list[Subscription] = []
        while clock.time() < 1100.0:
            clock.advance(0.5)
            await _settle()
            now = clock.time()
            for sub in subs:
                assert sub.deadline is not None
                if sub.deadline <= now:
                    assert sub.end_reason is EndReason.MAX_AGE
                    if sub not in ended_order:
                        ended_order.append(sub)
                else:
                    assert sub.end_reason is None
        assert len(ended_order) == count
        assert broker.subscriber_count() == 0
        # A subscription made later gets a deadline measured from its own start.
        late = broker.subscribe("t")
        assert late.deadline is not None
        assert clock.time() + 80.0 <= late.deadline <= clock.time() + 100.0


async def test_an_earlier_deadline_wakes_the_reaper() -> None:
    clock = ManualClock()
    async with Broker(max_connection_age=50, max_connection_age_jitter=0, clock=clock) as broker:
        first = broker.subscribe("t")
        await _settle()  # the reaper sleeps until t=50
        clock.advance(40)
        second = broker.subscribe("t")  # deadline t=90
        await _settle()
        clock.advance(10)
        await _settle()
        assert first.end_reason is EndReason.MAX_AGE
        assert second.end_reason is None
        clock.advance(40)
        await _settle()
        assert second.end_reason is EndReason.MAX_AGE
        # The consumer sees a clean end: it reconnects and resumes with Last-Event-ID.
        assert await second.receive() == []


async def test_expires_at_ends_a_subscription_then_after_delivering_what_is_queued() -> None:
    clock = ManualClock(1000.0)
    async with Broker(clock=clock) as broker:
        sub = broker.subscribe("t", expires_at=1030.0)
        other = broker.subscribe("t")
        assert sub.deadline == 1030.0
        assert other.deadline is None
        await _settle()
        clock.advance(29.9)
        await _settle()
        assert sub.end_reason is None
        await broker.publish("t", "queued before the expiry")
        clock.advance(0.1)
        await _settle()
        assert sub.end_reason is EndReason.EXPIRED
        assert other.end_reason is None
        assert broker.subscriber_count() == 1
        items = await sub.receive()
        assert [item.event.data for item in items if isinstance(item, StoredEvent)] == [
            "queued before the expiry"
        ]
        assert await sub.receive() == []


@pytest.mark.parametrize(
    ("expires_in", "reason"),
    [(30.0, EndReason.EXPIRED), (70.0, EndReason.MAX_AGE)],
    ids=["expiry-first", "age-first"],
)
async def test_the_earlier_of_max_age_and_expires_at_ends_it(
    expires_in: float, reason: EndReason
) -> None:
    clock = ManualClock()
    async with Broker(max_connection_age=50, max_connection_age_jitter=0, clock=clock) as broker:
        sub = broker.subscribe("t", expires_at=expires_in)
        assert sub.deadline == min(expires_in, 50.0)
        await _settle()
        clock.advance(min(expires_in, 50.0))
        await _settle()
        assert sub.end_reason is reason


async def test_an_expiry_in_the_past_ends_the_subscription_at_once() -> None:
    clock = ManualClock(100.0)
    async with Broker(clock=clock) as broker:
        sub = broker.subscribe("t", expires_at=99.0)
        await _settle()
        assert sub.end_reason is EndReason.EXPIRED


async def test_a_nan_expiry_is_refused_and_nothing_is_registered() -> None:
    async with Broker() as broker:
        with pytest.raises(ConfigurationError, match="NaN"):
            broker.subscribe("t", expires_at=float("nan"))
        assert broker.subscriber_count() == 0


async def test_subscriptions_closed_before_their_expiry_leave_the_deadline_heap() -> None:
    clock = ManualClock()
    async with Broker(clock=clock) as broker:
        deadlines = broker._deadlines
        for _ in range(3000):
            broker.subscribe("t", expires_at=3600.0).close()
        kept = broker.subscribe("t", expires_at=3600.0)
        # Cancelled entries are swept once they are half the heap, not kept until 3600.
        assert len(deadlines) < 2100
        clock.advance(3600)
        await _settle()
        assert kept.end_reason is EndReason.EXPIRED
        assert len(deadlines) == 0


async def test_without_max_age_nothing_expires() -> None:
    clock = ManualClock()
    async with Broker(clock=clock) as broker:
        sub = broker.subscribe("t")
        assert sub.deadline is None
        clock.advance(10 * 365 * 86400)
        await _settle()
        assert sub.end_reason is None


# ------------------------------------------------------------------- threads


async def test_publishing_from_many_real_threads_at_once() -> None:
    threads, per_thread = 8, 150
    results: dict[int, list[StoredEvent]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)
    async with Broker() as broker:
        sub = broker.subscribe(["t", "u"])

        def work(n: int) -> None:
            try:
                barrier.wait(10)  # all threads publish at the same time
                mine = [
                    broker.publish_threadsafe("t" if i % 2 else "u", f"{n}:{i}")
                    for i in range(per_thread)
                ]
                results[n] = mine
            except BaseException as exc:  # reported to the test below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        received: list[object] = []
        with anyio.fail_after(20):
            while len(received) < threads * per_thread:
                received.extend(await sub.receive())
            for worker in workers:
                await anyio.to_thread.run_sync(worker.join)
    assert errors == []
    stored = [event for mine in results.values() for event in mine]
    assert len({event.id for event in stored}) == threads * per_thread  # unique ids
    for n, mine in results.items():
        # Each thread's events keep its order, and their data came through intact.
        assert [e.event.data for e in mine] == [f"{n}:{i}" for i in range(per_thread)]
        positions = [e.position for e in mine]
        assert positions == sorted(positions)
    # The subscriber got every event exactly once, in the broker's (id) order.
    assert received == sorted(stored, key=lambda e: e.position)


# ---------------------------------------------------------------- bounded lookup cost


def test_last_event_id_lookup_is_a_binary_search(monkeypatch: pytest.MonkeyPatch) -> None:
    size = 20_000
    history = History(max_size=size, max_age=3600.0)
    events = [
        StoredEvent(str(n), ("t",), ServerSentEvent(str(n), id=str(n)), 0.0, (n,))
        for n in range(1, size + 1)
    ]
    for event in events:
        history.append(event)
    calls = 0
    real_key = history_module._position

    def counting_key(event: StoredEvent) -> tuple[int, ...]:
        nonlocal calls
        calls += 1
        return real_key(event)

    monkeypatch.setattr(history_module, "_position", counting_key)
    for resume_at in (1, size // 3, size - 1, size):
        calls = 0
        after = history.after(["t"], (resume_at,))
        assert after is not None
        assert [e.position for e in after[:1]] == ([(resume_at + 1,)] if resume_at < size else [])
        assert len(after) == size - resume_at
        # O(log n) probes (about 15 for 20 000 events), never a scan of the history.
        assert calls <= 2 * size.bit_length(), calls
