"""Exact ``Last-Event-ID`` resume: replay then live with no gap and no duplicate, and resets.

The race test runs the broker over a wrapper backend that behaves like a remote one: its replay
yields to the scheduler a random number of times before and after reading history, and (when
``lag`` is set) events reach the broker's sink late, from a reader task, as with Redis. A
publisher and a reconnecting consumer race each other under seeded randomness.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from ssehub import InvalidLastEventId
from ssehub._clock import Clock, ManualClock
from ssehub.backends import EventSink, MemoryBackend, PendingEvent, Replay
from ssehub.broker import (
    Broker,
    Reset,
    ResetReason,
    StoredEvent,
    TopicMatcher,
    validate_last_event_id,
)

pytestmark = pytest.mark.anyio


class RemoteLikeBackend:
    """A memory backend with asynchronous replay and (optionally) a lagging sink."""

    def __init__(self, rng: random.Random, *, lag: bool, history_size: int = 100_000) -> None:
        self.inner = MemoryBackend(history_size=history_size)
        self.rng = rng
        self.lag = lag
        self._pending: list[StoredEvent] = []
        self._wakeup = anyio.Event()

    async def _yield(self) -> None:
        for _ in range(self.rng.randrange(4)):
            await anyio.lowlevel.checkpoint()

    async def start(self, *, sink: EventSink, clock: Clock, task_group: TaskGroup) -> None:
        if not self.lag:
            await self.inner.start(sink=sink, clock=clock, task_group=task_group)
            return

        def buffer(event: StoredEvent) -> None:
            self._pending.append(event)
            self._wakeup.set()

        async def reader() -> None:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                await self._yield()
                pending, self._pending = self._pending, []
                for event in pending:
                    sink(event)

        await self.inner.start(sink=buffer, clock=clock, task_group=task_group)
        task_group.start_soon(reader)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def publish(self, batch: Sequence[PendingEvent]) -> list[StoredEvent]:
        return await self.inner.publish(batch)

    async def replay(self, topics: Collection[str], last_event_id: str) -> Replay:
        await self._yield()
        replay = await self.inner.replay(topics, last_event_id)
        await self._yield()
        return replay

    async def replay_matching(
        self, topics: Collection[str], matchers: Sequence[TopicMatcher], last_event_id: str
    ) -> Replay:
        await self._yield()
        replay = await self.inner.replay_matching(topics, matchers, last_event_id)
        await self._yield()
        return replay

    async def history_sizes(self, topics: Collection[str] | None = None) -> dict[str, int]:
        return await self.inner.history_sizes(topics)


TOPIC_CHOICES = [("a",), ("b",), ("c",), ("a", "b"), ("b", "c"), ("c", "a")]
# For a subscription to ["p/*", "a"]: new topics appear while the consumer reconnects.
PATTERN_CHOICES = [("p/1",), ("p/new",), ("c",), ("a", "c"), ("c", "p/2"), ("p/1", "a")]


async def _race(seed: int, *, lag: bool, events: int, patterns: bool = False) -> int:
    """Return the number of reconnects; assert the consumer saw exactly the expected ids."""
    publisher_rng, consumer_rng = random.Random(seed), random.Random(seed + 1)
    choices = PATTERN_CHOICES if patterns else TOPIC_CHOICES
    subscribed = ["p/*", "a"] if patterns else ["a", "b"]

    def wanted(topics: Sequence[str]) -> bool:
        if patterns:
            return any(t == "a" or t.startswith("p/") for t in topics)
        return bool({"a", "b"} & set(topics))

    backend = RemoteLikeBackend(random.Random(seed + 2), lag=lag)
    expected: list[str] = []
    got: list[str] = []
    reconnects = 0
    finished = False
    async with Broker(backend) as broker:
        # Every subscription resumes, the first one from a start event: a consumer that has
        # processed nothing yet has nothing to resume from (like a browser).
        start = await broker.publish("a", "start")

        async def publisher() -> None:
            for i in range(events):
                topics = publisher_rng.choice(choices)
                if topics == ("p/new",):
                    topics = (f"p/new{i}",)  # a topic created during the race
                stored = await broker.publish(topics, str(i))
                if wanted(topics):
                    expected.append(stored.id)
                for _ in range(publisher_rng.randrange(3)):
                    await anyio.lowlevel.checkpoint()
            expected.append((await broker.publish("a", "end")).id)

        async def consumer() -> None:
            nonlocal reconnects, finished
            last = start.id
            while not finished:
                reconnects += 1
                async with broker.subscribe(subscribed, last_event_id=last) as sub:
                    for _ in range(consumer_rng.randrange(1, 4)):
                        items = await sub.receive()
                        assert sub.reset is None
                        keep = consumer_rng.randint(0, len(items))
                        for item in items[:keep]:
                            assert isinstance(item, StoredEvent)
                            got.append(item.id)
                            last = item.id
                            finished = item.event.data == "end"
                        if keep < len(items) or finished:
                            break  # disconnect mid-batch: the rest must come back on resume

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publisher)
                tg.start_soon(consumer)
    assert got == expected
    assert broker.statistics().subscribers == 0
    return reconnects


@pytest.mark.parametrize("lag", [False, True], ids=["sync-sink", "lagging-sink"])
async def test_resume_races_publishes_without_gap_or_duplicate(lag: bool) -> None:
    reconnects = 0
    for seed in range(8):
        reconnects += await _race(seed * 10, lag=lag, events=400)
    assert reconnects >= 1000  # thousands over both parametrisations and both event loops


@pytest.mark.parametrize("lag", [False, True], ids=["sync-sink", "lagging-sink"])
async def test_pattern_resume_races_publishes_without_gap_or_duplicate(lag: bool) -> None:
    # The same race for a subscription to a pattern (and an exact topic), while publishes
    # create new topics the pattern matches.
    reconnects = 0
    for seed in range(8):
        reconnects += await _race(seed * 10 + 5, lag=lag, events=400, patterns=True)
    assert reconnects >= 1000


async def test_resume_exact_across_multi_topic_publishes() -> None:
    async with Broker() as broker:
        first = await broker.publish("a", "0")
        e1 = await broker.publish(["a", "b"], "1")
        await broker.publish("c", "not subscribed")
        e2 = await broker.publish(["b", "c"], "2")
        async with broker.subscribe(["b", "a"], last_event_id=first.id) as sub:
            e3 = await broker.publish(["a", "b"], "3")
            with anyio.fail_after(5):
                assert await sub.receive() == [e1, e2, e3]


@pytest.mark.parametrize(
    "value",
    [
        "x" * 65,
        "<script>alert(1)</script>",
        "a b",
        "evil\x00id",
        "caf\u00e9-1",
        "1\n2",
        "id/with/slash",
    ],
)
async def test_malformed_last_event_id_resets_without_reflecting(value: str) -> None:
    async with Broker() as broker:
        await broker.publish("t", "before")
        sub = broker.subscribe("t", last_event_id=value)
        assert sub.reset is ResetReason.MALFORMED  # known at once, before any await
        live = await broker.publish("t", "after")
        with anyio.fail_after(5):
            frames = [item.encode() for item in await sub.receive()]
    assert frames == [b'event: ssehub.reset\ndata: {"reason":"malformed"}\n\n', live.encode()]
    assert all(value.encode("utf-8", "replace") not in frame for frame in frames)
    with pytest.raises(InvalidLastEventId) as info:
        validate_last_event_id(value)
    assert value not in str(info.value)


async def test_unknown_last_event_id_resets() -> None:
    async with Broker() as other:
        foreign = await other.publish("t", "x")
    async with Broker() as broker:
        mine = await broker.publish("t", "x")
        epoch = mine.id.rsplit("-", 1)[0]
        for value in (foreign.id, f"{epoch}-999", f"{epoch}-01", "nodash", f"{epoch}-"):
            sub = broker.subscribe("t", last_event_id=value)
            await sub.prepare()
            assert sub.reset is ResetReason.UNKNOWN, value
            with anyio.fail_after(5):
                items = await sub.receive()
            assert items == [Reset(ResetReason.UNKNOWN)]
            frames = [item.encode() for item in items]
            assert all(value.encode() not in frame for frame in frames)
            await sub.aclose()


async def test_expired_by_age_resets_then_live() -> None:
    clock = ManualClock()
    async with Broker(history_ttl=10.0, clock=clock) as broker:
        old = await broker.publish("t", "old")
        await broker.publish("t", "missed")  # expires with "old": resuming after "old" is lossy
        clock.advance(11)
        async with broker.subscribe("t", last_event_id=old.id) as sub:
            live = await broker.publish("t", "live")
            with anyio.fail_after(5):
                items = await sub.receive()
            assert items == [Reset(ResetReason.EXPIRED), live]
            payload = json.loads(items[0].encode().split(b"data: ")[1])
            assert payload == {"reason": "expired"}


async def test_resume_from_newest_id_is_live_only() -> None:
    async with Broker() as broker:
        last = await broker.publish("t", "x")
        async with broker.subscribe("t", last_event_id=last.id) as sub:
            await sub.prepare()
            assert sub.reset is None
            live = await broker.publish("t", "y")
            with anyio.fail_after(5):
                assert await sub.receive() == [live]


def test_validate_last_event_id_accepts_our_ids() -> None:
    assert validate_last_event_id(None) is None
    assert validate_last_event_id("") is None
    assert validate_last_event_id("ab12-7") == "ab12-7"
    assert validate_last_event_id("1700000000000-3") == "1700000000000-3"
    assert validate_last_event_id("a.b:c_d-" + "x" * 56) is not None
