"""The conformance suite every backend passes: ids, history bounds, replay, resets, atomicity.

Tests drive backends through a real :class:`~ssehub.Broker` (the backend contract is only
meaningful with its sink wired) on a :class:`~ssehub._clock.ManualClock`.
"""

from __future__ import annotations

import re

import anyio
import pytest
from backend_runs import BackendFactory, parametrize_backends

from ssehub import EventValidationError, InvalidTopic
from ssehub._clock import ManualClock
from ssehub.broker import Broker, Publication, Reset, ResetReason, StoredEvent

pytestmark = [pytest.mark.anyio, parametrize_backends]

ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def make_broker(
    factory: BackendFactory,
    *,
    history_size: int = 100,
    history_ttl: float = 3600.0,
    clock: ManualClock | None = None,
) -> Broker:
    return Broker(factory(history_size, history_ttl), clock=clock or ManualClock())


async def test_ids_are_short_ascii_unique_and_increasing(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        stored = [await broker.publish(f"t{i % 3}", str(i)) for i in range(30)]
    ids = [event.id for event in stored]
    assert len(set(ids)) == 30
    assert all(ID_RE.fullmatch(event_id) for event_id in ids)
    positions = [event.position for event in stored]
    assert positions == sorted(positions)
    assert len(set(positions)) == 30
    assert all(event.event.id == event.id for event in stored)


async def test_replay_returns_events_after_id_in_order(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        stored = [await broker.publish("a", str(i)) for i in range(10)]
        replay = await broker.backend.replay(["a"], stored[3].id)
    assert replay.reset is None
    assert [event.id for event in replay.events] == [event.id for event in stored[4:]]


async def test_replay_multi_topic_dedupes_and_merges(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        first = await broker.publish("a", "0")
        e1 = await broker.publish(["a", "b"], "both")
        e2 = await broker.publish("b", "b only")
        await broker.publish("c", "other")
        e3 = await broker.publish("a", "a only")
        replay = await broker.backend.replay(["a", "b"], first.id)
    assert [event.id for event in replay.events] == [e1.id, e2.id, e3.id]


async def test_replay_of_latest_id_is_empty(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        last = await broker.publish("a", "x")
        replay = await broker.backend.replay(["a"], last.id)
    assert replay.reset is None
    assert list(replay.events) == []


async def test_unknown_ids_reset(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as other:
        foreign = await other.publish("a", "x")
    async with make_broker(backend_factory) as broker:
        await broker.publish("a", "x")
        for unknown in (foreign.id, "nope", "0-0", "999999999999-0"):
            replay = await broker.backend.replay(["a"], unknown)
            assert replay.reset is ResetReason.UNKNOWN, unknown
            assert list(replay.events) == []


async def test_count_bound_expires_old_ids(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory, history_size=5) as broker:
        stored = [await broker.publish("a", str(i)) for i in range(10)]
        sizes = await broker.backend.history_sizes(["a"])
        assert sizes == {"a": 5}
        # stored[4] is the newest evicted event: resuming after it is still exact.
        ok = await broker.backend.replay(["a"], stored[4].id)
        assert [event.id for event in ok.events] == [event.id for event in stored[5:]]
        expired = await broker.backend.replay(["a"], stored[3].id)
        assert expired.reset is ResetReason.EXPIRED


async def test_age_bound_reads_the_clock(backend_factory: BackendFactory) -> None:
    clock = ManualClock()
    async with make_broker(backend_factory, history_ttl=60.0, clock=clock) as broker:
        old = await broker.publish("a", "old")
        clock.advance(30)
        mid = await broker.publish("a", "mid")
        assert (await broker.backend.history_sizes(["a"])) == {"a": 2}
        clock.advance(31)  # "old" is now 61 s old, "mid" 31 s
        assert (await broker.backend.history_sizes(["a"])) == {"a": 1}
        replay = await broker.backend.replay(["a"], old.id)
        assert [event.id for event in replay.events] == [mid.id]
        before_old = await broker.backend.replay(["a"], mid.id)
        assert list(before_old.events) == []
        clock.advance(30)
        assert (await broker.backend.history_sizes(["a"])) == {"a": 0}
        gone = await broker.backend.replay(["a"], old.id)
        assert gone.reset is ResetReason.EXPIRED


async def test_publish_many_is_all_or_nothing(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        with pytest.raises(EventValidationError):
            await broker.publish_many(
                [Publication("a", "fine"), Publication("a", "bad", event="x\ny")]
            )
        with pytest.raises(InvalidTopic):
            await broker.publish_many([Publication("a", "fine"), Publication("", "x")])
        assert (await broker.backend.history_sizes(["a"])) == {"a": 0}
        stored = await broker.publish_many([Publication("a", "1"), Publication(["a", "b"], "2")])
        assert [event.event.data for event in stored] == ["1", "2"]
        assert (await broker.backend.history_sizes(["a", "b"])) == {"a": 2, "b": 1}


async def test_resume_through_subscription(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory) as broker:
        stored = [await broker.publish("a", str(i)) for i in range(5)]
        async with broker.subscribe("a", last_event_id=stored[1].id) as sub:
            live = await broker.publish("a", "live")
            with anyio.fail_after(5):
                items = await sub.receive()
    assert all(isinstance(item, StoredEvent) for item in items)
    assert [item.id for item in items] == [e.id for e in stored[2:]] + [live.id]  # type: ignore[union-attr]


async def test_expired_resume_sends_reset_first(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory, history_size=2) as broker:
        stored = [await broker.publish("a", str(i)) for i in range(5)]
        async with broker.subscribe("a", last_event_id=stored[0].id) as sub:
            await sub.prepare()
            assert sub.reset is ResetReason.EXPIRED
            live = await broker.publish("a", "live")
            with anyio.fail_after(5):
                items = await sub.receive()
    assert items == [Reset(ResetReason.EXPIRED), live]


async def test_forget_drops_a_topics_history_only(backend_factory: BackendFactory) -> None:
    async with make_broker(backend_factory, history_size=3) as broker:
        before = await broker.publish("keep", "before")
        gone = [await broker.publish("gone", str(i)) for i in range(5)]  # 2 evicted by count
        both = await broker.publish(["keep", "gone"], "both")
        await broker.backend.forget(["gone", "never-published"])
        assert await broker.backend.history_sizes(["keep", "gone"]) == {"keep": 2, "gone": 0}
        assert "gone" not in await broker.backend.history_sizes()
        # Nothing of the forgotten topic is replayed, and its old trim mark went with it: an
        # id from before the forget is not "expired", it resumes what comes after the forget.
        empty = await broker.backend.replay(["gone"], gone[0].id)
        assert (empty.reset, list(empty.events)) == (None, [])
        kept = await broker.backend.replay(["keep"], before.id)
        assert [event.id for event in kept.events] == [both.id]
        again = await broker.publish("gone", "again")
        replay = await broker.backend.replay(["gone", "keep"], gone[0].id)
        assert replay.reset is None
        assert [event.id for event in replay.events] == [both.id, again.id]
        await broker.backend.forget([])  # nothing to do


async def test_topics_whose_history_aged_out_are_removed(backend_factory: BackendFactory) -> None:
    clock = ManualClock()
    async with make_broker(backend_factory, history_ttl=60.0, clock=clock) as broker:
        backend = broker.backend
        a0 = await broker.publish("a", "a0")
        a1 = await broker.publish("a", "a1")
        clock.advance(30)
        c1 = await broker.publish("c", "c1")
        clock.advance(31)  # every event of "a" is now past the age bound; "c1" is 31 s old
        b1 = await broker.publish("b", "b1")  # removes "a" (lazily: here, at a publish)
        assert await backend.history_sizes() == {"b": 1, "c": 1}
        assert await backend.history_sizes(["a"]) == {"a": 0}
        # "a" has no history left, yet an id after which "a" had an event is not resumed as if
        # complete; after a1, the newest of "a", nothing of "a" is missing.
        assert (await backend.replay(["a"], a0.id)).reset is ResetReason.EXPIRED
        assert (await backend.replay(["a", "c"], a0.id)).reset is ResetReason.EXPIRED
        after_last = await backend.replay(["a"], a1.id)
        assert (after_last.reset, list(after_last.events)) == (None, [])
        # A live topic is unaffected, even from an id older than what "a" lost.
        live = await backend.replay(["c"], a0.id)
        assert live.reset is None
        assert [event.id for event in live.events] == [c1.id]
        both = await backend.replay(["a", "b", "c"], a1.id)
        assert [event.id for event in both.events] == [c1.id, b1.id]
        # Publishing to "a" again starts a new history that still knows what was lost.
        a2 = await broker.publish("a", "a2")
        assert (await backend.replay(["a"], a0.id)).reset is ResetReason.EXPIRED
        again = await backend.replay(["a"], a1.id)
        assert [event.id for event in again.events] == [a2.id]
        assert await backend.history_sizes() == {"a": 1, "b": 1, "c": 1}
