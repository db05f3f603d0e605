"""Pattern subscriptions on every backend: live delivery, and exact ``Last-Event-ID`` resume across
every topic a pattern matched, with no gap and no duplicate at the replay-to-live handover, also
when events are published while the resume is being read (injected at the backend's steps)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import pytest
from backend_runs import ASYNCIO, BackendFactory, parametrize_backends
from backend_runs import collect as collect_items
from redis_support import redis_factory

from ssehub._clock import ManualClock
from ssehub.backends import Backend, MemoryBackend, Replay, replay_matching
from ssehub.broker import Broker, Reset, ResetReason, StoredEvent, Subscription, TopicMatcher

pytestmark = pytest.mark.anyio


async def collect(sub: Subscription, count: int) -> list[Any]:
    """:func:`backend_runs.collect`, and nothing more (no duplicate) so far."""
    items = await collect_items(sub, count)
    assert sub.receive_nowait() == []  # nothing more (no duplicate) so far
    return items


@parametrize_backends
async def test_live_pattern_delivery(backend_factory: BackendFactory) -> None:
    broker = Broker(backend_factory(100, 3600.0))
    async with broker, broker.subscribe(["orders/*", "x"]) as sub:
        a = await broker.publish("orders/new", "a")  # a topic created after subscribing
        await broker.publish("users/1", "not mine")
        b = await broker.publish(["orders/1", "x"], "b")  # pattern and exact: once
        c = await broker.publish("x", "c")
        assert await collect(sub, 3) == [a, b, c]


@parametrize_backends
async def test_resume_across_every_matched_topic(backend_factory: BackendFactory) -> None:
    async with Broker(backend_factory(100, 3600.0), clock=ManualClock()) as broker:
        start = await broker.publish("orders/1", "start")
        e1 = await broker.publish("orders/1", "1")
        await broker.publish("users/1", "not mine")
        e2 = await broker.publish(["orders/2", "users/1"], "2")  # a new topic, matched
        e3 = await broker.publish("orders/2/items", "3")
        e4 = await broker.publish("x", "4")  # the exact topic
        e5 = await broker.publish(["x", "orders/9"], "5")  # once, though matched twice
        async with broker.subscribe(["orders/*", "x"], last_event_id=start.id) as sub:
            await sub.prepare()
            assert sub.reset is None
            live = await broker.publish("orders/3", "live")
            assert await collect(sub, 6) == [e1, e2, e3, e4, e5, live]
        # From the newest id: nothing to replay, live only.
        async with broker.subscribe("orders/*", last_event_id=live.id) as sub:
            after = await broker.publish("orders/4", "after")
            assert await collect(sub, 1) == [after]


@parametrize_backends
async def test_resume_resets_honestly(backend_factory: BackendFactory) -> None:
    clock = ManualClock()
    async with Broker(backend_factory(100, 150.0), clock=clock) as broker:
        resume = await broker.publish("keep", "r")
        await broker.publish("orders/gone", "lost")  # ages out with nothing after it
        clock.advance(100)
        kept = await broker.publish("keep", "k")
        clock.advance(60)  # the first two events are past the age bound now
        # An exact topic resumes (the events after the id on it are retained)...
        async with broker.subscribe("keep", last_event_id=resume.id) as sub:
            await sub.prepare()
            assert (sub.reset, sub.receive_nowait()) == (None, [kept])
        # ...but "orders/gone" matched the pattern, and its event after the id is gone.
        async with broker.subscribe(["keep", "orders/*"], last_event_id=resume.id) as sub:
            await sub.prepare()
            assert sub.reset is ResetReason.EXPIRED
            items = sub.receive_nowait()
            assert items == [Reset(ResetReason.EXPIRED)]
        # An id of another data set is unknown.
        unknown = "zz-1" if isinstance(broker.backend, MemoryBackend) else "00000000-1-0"
        async with broker.subscribe("orders/*", last_event_id=unknown) as sub:
            await sub.prepare()
            assert sub.reset is ResetReason.UNKNOWN


# ------------------------------------------------------------------------------ races


class PublishingDuringResume:
    """A memory backend whose ``replay_matching`` runs a hook before and after reading."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.before: Callable[[], Any] | None = None
        self.after: Callable[[], Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def replay_matching(
        self, topics: Collection[str], matchers: Sequence[TopicMatcher], last_event_id: str
    ) -> Replay:
        if self.before is not None:
            await self.before()
        replay = await self.inner.replay_matching(topics, matchers, last_event_id)
        if self.after is not None:
            await self.after()
        return replay


@pytest.mark.parametrize("when", ["before", "after"])
async def test_memory_publishes_during_the_resume_are_delivered_once(when: str) -> None:
    backend = PublishingDuringResume()
    async with Broker(backend) as broker:
        start = await broker.publish("orders/1", "start")
        e1 = await broker.publish("orders/1", "1")
        during: list[StoredEvent] = []

        async def publish() -> None:
            during.append(await broker.publish("orders/new", "new topic"))
            during.append(await broker.publish("orders/1", "old topic"))

        setattr(backend, when, publish)
        async with broker.subscribe("orders/*", last_event_id=start.id) as sub:
            await sub.prepare()
            backend.before = backend.after = None
            live = await broker.publish("orders/2", "live")
            assert await collect(sub, 4) == [e1, *during, live]


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", [ASYNCIO])
async def test_redis_publishes_between_listing_and_replay_are_delivered_once() -> None:
    backend = redis_factory(100, 3600.0)
    async with Broker(backend) as broker:
        start = await broker.publish("orders/1", "start")
        e1 = await broker.publish("orders/1", "1")
        during: list[StoredEvent] = []
        listing = backend._topics_at_tip

        async def list_then_publish() -> Any:
            listed = await listing()
            # After the listing, before the replay: a new topic (not listed: it must come
            # from the live queue) and a listed one (read by the replay after the tip: it
            # must be dropped there and come from the live queue, once).
            during.append(await broker.publish("orders/new", "new topic"))
            during.append(await broker.publish("orders/1", "old topic"))
            return listed

        backend._topics_at_tip = list_then_publish  # type: ignore[method-assign]
        async with broker.subscribe("orders/*", last_event_id=start.id) as sub:
            await sub.prepare()
            backend._topics_at_tip = listing  # type: ignore[method-assign]
            live = await broker.publish("orders/2", "live")
            assert await collect(sub, 4) == [e1, *during, live]
        # Once the reader has delivered everything, a resume from the start sees it all.
        async with broker.subscribe("orders/*", last_event_id=start.id) as sub:
            assert await collect(sub, 4) == [e1, *during, live]


class WithoutPatternReplay:
    """A backend written before ``replay_matching`` (it has no such method)."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()

    def __getattr__(self, name: str) -> Any:
        if name == "replay_matching":
            raise AttributeError(name)
        return getattr(self.inner, name)


async def test_a_backend_without_replay_matching_resets_pattern_resumes() -> None:
    backend = WithoutPatternReplay()
    assert isinstance(backend, Backend)
    async with Broker(backend) as broker:
        start = await broker.publish("a/1", "start")
        await broker.publish("a/1", "1")
        replay = await replay_matching(backend, (), [], start.id)
        assert replay.reset is ResetReason.UNKNOWN
        async with broker.subscribe("a/*", last_event_id=start.id) as sub:
            await sub.prepare()
            assert sub.reset is ResetReason.UNKNOWN  # never a replay with a gap
            live = await broker.publish("a/2", "live")
            assert await collect(sub, 2) == [Reset(ResetReason.UNKNOWN), live]
        async with broker.subscribe("a/1", last_event_id=start.id) as sub:  # exact: as before
            await sub.prepare()
            assert sub.reset is None
