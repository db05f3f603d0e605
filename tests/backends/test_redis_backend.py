"""The Redis backend beyond the shared conformance suite: what only a shared store can show.

Runs against the real Redis on 127.0.0.1:6379 (skipped without it unless
``SSEHUB_REQUIRE_REDIS=1``), each test on its own key prefix. The backend is asyncio-only
(redis-py's ``redis.asyncio`` client), so these tests run on asyncio, except the one that checks
the clear refusal under trio.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
import redis
from redis_support import REDIS_URL, delete_prefix, require_redis
from redis_support import redis_backend as backend

from ssehub import (
    BackendUnavailable,
    BrokerClosed,
    ConfigurationError,
    MissingDependency,
    ServerSentEvent,
)
from ssehub._clock import ManualClock
from ssehub.backends import create_backend
from ssehub.backends.redis import RedisBackend, parse_event_id
from ssehub.broker import Broker, ResetReason, StoredEvent

pytestmark = [pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's client is asyncio-only; see the module docstring.
    return "asyncio"


def sync_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=5)


# -- configuration -----------------------------------------------------------------------------


def test_from_url_takes_our_options_out_of_the_query() -> None:
    made = RedisBackend.from_url(
        "redis://127.0.0.1:6379/3?prefix=shop&log_size=5000&max_connections=4&socket_keepalive=1",
        history_size=10,
        history_ttl=60.0,
    )
    assert (made.prefix, made.log_size, made.max_connections) == ("shop", 5000, 4)
    assert made.url == "redis://127.0.0.1:6379/3?socket_keepalive=1"
    assert (made.history_size, made.history_ttl) == (10, 60.0)


def test_factory_maps_redis_and_rediss_schemes() -> None:
    plain = create_backend("redis://127.0.0.1:6379/0", history_size=5, history_ttl=1.0)
    tls = create_backend("rediss://cache.example:6380/1", history_size=5, history_ttl=1.0)
    assert isinstance(plain, RedisBackend)
    assert isinstance(tls, RedisBackend)
    assert tls.url.startswith("rediss://")
    assert plain.log_size >= 5


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://h/0?prefix=bad{brace}", {}),
        ("redis://h/0?prefix=", {}),
        ("redis://h/0?log_size=many", {}),
        ("redis://h/0?log_size=3", {}),  # smaller than the history
        ("redis://h/0?max_connections=0", {}),
        ("memcached://h/0", {}),
    ],
)
def test_bad_options_are_configuration_errors(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(url, history_size=10, history_ttl=60.0)


def test_bad_bounds_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend(history_size=0)
    with pytest.raises(ConfigurationError):
        RedisBackend(history_ttl=0)


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import redis.asyncio` raise ImportError.
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingDependency, match=r"ssehub\[redis\]"):
        RedisBackend()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0a1b2c3d-1700000000000-3", ("0a1b2c3d", (1700000000000, 3))),
        ("0a1b2c3d-0-0", ("0a1b2c3d", (0, 0))),
        ("0a1b2c3d-18446744073709551615-1", ("0a1b2c3d", (2**64 - 1, 1))),
        ("0a1b2c3d-18446744073709551616-1", None),  # beyond Redis's 64-bit ids
        ("0a1b2c3d-01-1", None),  # leading zero: not canonical
        ("0A1B2C3D-1-1", None),
        ("1700000000000-3", None),  # a bare stream id has no epoch
        ("abc-1-1", None),
        ("", None),
    ],
)
def test_parse_event_id(value: str, expected: object) -> None:
    assert parse_event_id(value) == expected


# -- storage -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_entries_are_plain_fields_never_pickle(broker: Broker, prefix: str) -> None:
    stored = await broker.publish(["a", "b"], "line 1\nline 2", event="update", retry=1500)
    client = sync_client()
    try:
        ((_, fields),) = client.xrange(f"ssehub:{{{prefix}}}:t:a")
        log = client.xrange(f"ssehub:{{{prefix}}}:log")
    finally:
        client.close()
    assert fields == {
        b"t": b'["a","b"]',
        b"d": b"line 1\nline 2",
        b"e": b"update",
        b"r": b"1500",
    }
    assert log[0][1][b"p"] == stored.id.split("-")[0].encode()  # the epoch rides in the log
    assert stored.event.encode() == (
        f"id: {stored.id}\nevent: update\ndata: line 1\ndata: line 2\nretry: 1500\n\n".encode()
    )


@pytest.mark.anyio
async def test_history_sizes_lists_every_published_topic(broker: Broker) -> None:
    await broker.publish(["x", "y"], "1")
    await broker.publish("y", "2")
    assert await broker.backend.history_sizes() == {"x": 1, "y": 2}
    assert await broker.backend.history_sizes(["never"]) == {"never": 0}


@pytest.mark.anyio
async def test_replay_cost_is_bounded_by_the_history(prefix: str) -> None:
    async with Broker(backend(prefix, history_size=5), clock=ManualClock()) as broker:
        first = await broker.publish("a", "0")
        stored = [await broker.publish("a", str(i)) for i in range(1, 50)]
        client = sync_client()
        try:
            assert client.xlen(f"ssehub:{{{prefix}}}:t:a") == 5  # exact trimming
        finally:
            client.close()
        assert (await broker.backend.replay(["a"], first.id)).reset is ResetReason.EXPIRED
        replay = await broker.backend.replay(["a"], stored[-6].id)
    assert [event.id for event in replay.events] == [event.id for event in stored[-5:]]


# -- topics that age out -------------------------------------------------------------------------


def stream_id(event: StoredEvent) -> bytes:
    return event.id.split("-", 1)[1].encode()


@pytest.mark.anyio
async def test_aged_out_topics_leave_redis(prefix: str) -> None:
    clock = ManualClock()
    base = f"ssehub:{{{prefix}}}:"
    client = sync_client()
    try:
        async with Broker(backend(prefix, history_ttl=60.0), clock=clock) as broker:
            await broker.publish("a", "a0")
            a1 = await broker.publish("a", "a1")
            clock.advance(30)
            c1 = await broker.publish("c", "c1")
            clock.advance(31)
            assert client.exists(base + "t:a") == 1  # nothing removes it before a publish
            b1 = await broker.publish("b", "b1")
            assert client.exists(base + "t:a") == 0
            assert client.hexists(base + "gone", "a") is False
            assert client.zscore(base + "newest", "a") is None
            assert client.hget(base + "meta", "forgotten") == stream_id(a1)
            assert client.exists(base + "topics") == 0  # the old set is never created
            newest = dict(client.zrange(base + "newest", 0, -1, withscores=True))
            assert newest == {b"b": b1.position[0], b"c": c1.position[0]}
            assert client.xlen(base + "t:c") == 1
            # A topic published again gets the watermark as its own mark, like a new memory log.
            await broker.publish("a", "a2")
            assert client.hget(base + "gone", "a") == stream_id(a1)
            await broker.backend.forget(["a"])
            assert client.zscore(base + "newest", "a") is None
            assert client.hget(base + "meta", "forgotten") == stream_id(a1)  # forget: unchanged
    finally:
        client.close()


@pytest.mark.anyio
async def test_removal_is_bounded_per_call(prefix: str) -> None:
    from ssehub.backends.redis import _EXPIRE_BATCH as BATCH

    clock = ManualClock()
    newest = f"ssehub:{{{prefix}}}:newest"
    client = sync_client()
    try:
        async with Broker(backend(prefix, history_ttl=60.0), clock=clock) as broker:
            for index in range(3 * BATCH):
                await broker.publish(f"task-{index}", "done")
            clock.advance(61)
            await broker.publish("x", "1")  # removes at most BATCH + 1 (the topics it touched)
            assert client.zcard(newest) == 3 * BATCH - (BATCH + 1) + 1
            # Listing ignores what is left to remove, and removes at most BATCH more.
            assert await broker.backend.history_sizes() == {"x": 1}
            assert client.zcard(newest) == 3 * BATCH - (BATCH + 1) + 1 - BATCH
            await broker.publish("x", "2")
            assert client.zrange(newest, 0, -1) == [b"x"]
            assert client.keys(f"ssehub:{{{prefix}}}:t:task-*") == []
    finally:
        client.close()


@pytest.mark.anyio
async def test_a_stale_score_never_removes_live_history(prefix: str) -> None:
    """A topic only scored as old (picked, then published to; or published by a process of an
    older version, which does not score topics) keeps its history and gets its true score."""
    clock = ManualClock()
    newest = f"ssehub:{{{prefix}}}:newest"
    client = sync_client()
    try:
        async with Broker(backend(prefix, history_ttl=60.0), clock=clock) as broker:
            live = await broker.publish("live", "1")
            client.zadd(newest, {"live": 0})
            await broker.publish("x", "1")
            assert client.zscore(newest, "live") == live.position[0]
            assert await broker.backend.history_sizes() == {"live": 1, "x": 1}
    finally:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("trigger", ["publish", "list"])
async def test_the_old_topics_set_is_moved_into_the_sorted_set(prefix: str, trigger: str) -> None:
    """Data written before ``newest`` existed: a plain ``topics`` set and unscored streams."""
    clock = ManualClock()
    base = f"ssehub:{{{prefix}}}:"
    client = sync_client()
    try:
        async with Broker(backend(prefix, history_ttl=60.0), clock=clock) as broker:
            dead = await broker.publish("old-dead", "1")
            clock.advance(30)
            alive = await broker.publish("old-live", "2")
            client.delete(base + "newest")
            client.sadd(base + "topics", "old-dead", "old-live", "old-forgotten")
            clock.advance(31)
            if trigger == "publish":
                await broker.publish("x", "1")
                expected = {"old-live": 1, "x": 1}
            else:
                expected = {"old-live": 1}
            assert await broker.backend.history_sizes() == expected
            assert client.exists(base + "topics") == 0  # emptied, so Redis deleted it
            assert client.exists(base + "t:old-dead") == 0
            assert client.zscore(base + "newest", "old-live") == alive.position[0]
            assert client.hget(base + "meta", "forgotten") == stream_id(dead)
            again = await broker.backend.replay(["old-live"], dead.id)
            assert [event.id for event in again.events] == [alive.id]
    finally:
        client.close()


# -- many processes ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_brokers_share_topics_history_and_resume(prefix: str) -> None:
    """Two brokers on one prefix stand for two hub processes behind a load balancer."""
    clock = ManualClock()
    async with (
        Broker(backend(prefix), clock=clock) as hub_a,
        Broker(backend(prefix), clock=clock) as hub_b,
        hub_b.subscribe(["orders", "news"]) as on_b,
    ):
        published = [
            await hub_a.publish("orders", "o1"),
            await hub_a.publish(["orders", "news"], "both"),
            await hub_b.publish("news", "n1"),
            await hub_a.publish("other", "not subscribed"),
            await hub_a.publish("orders", "o2"),
        ]
        wanted = [event.id for event in published if event.event.data != "not subscribed"]
        received: list[str] = []
        with anyio.fail_after(5):
            while len(received) < len(wanted):
                received += [item.id for item in await on_b.receive()]  # type: ignore[union-attr]
        assert received == wanted
        # A client cut from B after the first event resumes on A with its Last-Event-ID.
        async with hub_a.subscribe(["orders", "news"], last_event_id=wanted[0]) as on_a:
            live = await hub_b.publish("orders", "o3")
            resumed: list[str] = []
            with anyio.fail_after(5):
                while len(resumed) < len(wanted):
                    resumed += [item.id for item in await on_a.receive()]  # type: ignore[union-attr]
    assert resumed == [*wanted[1:], live.id]


@pytest.mark.anyio
async def test_batch_is_atomic_and_ordered(broker: Broker) -> None:
    async with broker.subscribe(["a", "b"]) as subscription:
        from ssehub.broker import Publication

        stored = await broker.publish_many(
            [Publication("a", "1"), Publication(["a", "b"], "2"), Publication("b", "3")]
        )
        with anyio.fail_after(5):
            items = await subscription.receive()
    assert [item.id for item in items if isinstance(item, StoredEvent)] == [e.id for e in stored]
    positions = [event.position for event in stored]
    assert positions == sorted(positions)


@pytest.mark.anyio
async def test_connections_are_bounded_whatever_the_load(prefix: str) -> None:
    """300 concurrent resumes share a pool of 3 connections (+1 reader). Waiting for a free
    connection is load, not Redis being away: it takes longer than ``socket_timeout`` here
    (0.5 s), and still no command fails."""
    options = {"max_connections": 3, "socket_timeout": 0.5}
    async with Broker(backend(prefix, **options), clock=ManualClock()) as broker:
        stored = [await broker.publish("a", str(i)) for i in range(100)]
        results: dict[int, list[str]] = {}

        async def resume(index: int) -> None:
            # Distinct ids, so that every resume is its own read (identical ones are shared).
            after = index % 99
            replay = await broker.backend.replay(["a"], stored[after].id)
            results[index] = [event.id for event in replay.events[-1:]] + [str(after)]

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for index in range(300):
                    group.start_soon(resume, index)
        client = sync_client()
        try:
            ours = [
                entry
                for entry in client.client_list()
                if entry.get("name", "") == f"ssehub:{prefix}"
            ]
        finally:
            client.close()
    assert results == {i: [stored[-1].id, str(i % 99)] for i in range(300)}
    assert 1 <= len(ours) <= 4


@pytest.mark.anyio
async def test_identical_concurrent_resumes_share_one_read(prefix: str) -> None:
    async with Broker(backend(prefix), clock=ManualClock()) as broker:
        stored = [await broker.publish(["a", "b"], str(i)) for i in range(10)]
        replays = []

        async def resume(topics: list[str]) -> None:
            replays.append(await broker.backend.replay(topics, stored[2].id))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for index in range(50):
                    group.start_soon(resume, ["a", "b"] if index % 2 else ["b", "a"])
        later = await broker.backend.replay(["a", "b"], stored[2].id)
    assert all(replay is replays[0] for replay in replays)  # one read, one decoding
    assert [event.id for event in replays[0].events] == [event.id for event in stored[3:]]
    assert later is not replays[0]  # nothing is cached once the read is over
    assert later.events == replays[0].events


@pytest.mark.anyio
async def test_a_malformed_log_entry_is_skipped_not_fatal(broker: Broker, prefix: str) -> None:
    async with broker.subscribe("a") as subscription:
        client = sync_client()
        try:
            # An old id, so that the next publish (at Redis's time) still comes after it.
            client.xadd(f"ssehub:{{{prefix}}}:log", {"junk": "not ours"}, id="1-1")
        finally:
            client.close()
        stored = await broker.publish("a", "fine")
        with anyio.fail_after(5):
            items = await subscription.receive()
    assert [item.id for item in items if isinstance(item, StoredEvent)] == [stored.id]


@pytest.mark.anyio
async def test_ids_from_a_lost_data_set_are_unknown(prefix: str) -> None:
    async with Broker(backend(prefix), clock=ManualClock()) as broker:
        before = await broker.publish("a", "x")
        delete_prefix(prefix)  # as after a restart without persistence, or a flush
        after = await broker.publish("a", "y")
        assert after.id.split("-")[0] != before.id.split("-")[0]  # a new epoch
        replay = await broker.backend.replay(["a"], before.id)
    assert replay.reset is ResetReason.UNKNOWN


@pytest.mark.anyio
async def test_publish_before_start_is_refused() -> None:
    with pytest.raises(BrokerClosed):
        await RedisBackend().publish([(("a",), ServerSentEvent("x"))])


@pytest.mark.anyio
async def test_start_without_redis_is_backend_unavailable() -> None:
    port = _closed_port()
    # The broker currently re-raises start() errors inside an ExceptionGroup; accept both.
    with pytest.RaisesGroup(BackendUnavailable, allow_unwrapped=True, flatten_subgroups=True):
        async with Broker(RedisBackend(f"redis://127.0.0.1:{port}/0", socket_timeout=2)):
            pass


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_is_refused_clearly() -> None:
    with pytest.RaisesGroup(
        pytest.RaisesExc(ConfigurationError, match="asyncio"),
        allow_unwrapped=True,
        flatten_subgroups=True,
    ):
        async with Broker(RedisBackend()):
            pass


def _closed_port() -> int:
    from redis_support import free_port

    return free_port()  # nothing listens there once the probe socket is closed


@pytest.mark.parametrize(
    ("required", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_without_redis_tests_fail_in_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch, required: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("SSEHUB_REQUIRE_REDIS", required)
    with pytest.raises(outcome, match="no Redis answers"):
        require_redis(f"redis://127.0.0.1:{_closed_port()}/0")


@pytest.mark.anyio
async def test_a_resume_joins_a_shared_read_only_if_it_misses_nothing(prefix: str) -> None:
    # Client A's replay read has been answered by Redis (paused before it returns); an event is
    # published and delivered here; then client B resumes from the same id. Joining A's read
    # would give B neither that event's replay (after A's snapshot) nor its live copy
    # (delivered before B registered): B must read for itself.
    store = backend(prefix)
    answered, release = anyio.Event(), anyio.Event()
    read = store._shared_replay._read

    async def paused_read(topics: Any, last_event_id: str) -> Any:
        replay = await read(topics, last_event_id)
        if not answered.is_set():
            answered.set()
            await release.wait()
        return replay

    store._shared_replay._read = paused_read
    async with Broker(store) as broker:
        first = await broker.publish("news", "first")
        live = broker.subscribe("news")
        a = broker.subscribe("news", first.id)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(a.prepare)
                await answered.wait()
                delivered = anyio.Event()
                live.on_ready(delivered.set)
                second = await broker.publish("news", "second")
                await delivered.wait()  # the reader has delivered it in this process
                b = broker.subscribe("news", first.id)
                group.start_soon(b.prepare)
                await anyio.wait_all_tasks_blocked()
                release.set()
        got = [item.id for item in b.receive_nowait() if isinstance(item, StoredEvent)]
        assert got == [second.id]
        got = [item.id for item in a.receive_nowait() if isinstance(item, StoredEvent)]
        assert got == [second.id]


@pytest.mark.anyio
async def test_a_publish_waiting_for_the_reader_returns_when_the_broker_closes(
    prefix: str,
) -> None:
    # The reader stops with the broker: a publisher waiting for it to deliver its event
    # (stored already) returns at once, not after socket_timeout (here 30 s).
    redis_backend = backend(prefix, socket_timeout=30)
    reader = redis_backend._reader
    real_delivered = reader.delivered
    waiting = anyio.Event()
    returned = anyio.Event()
    outcome: list[StoredEvent] = []

    async def stalled_read() -> None:
        await anyio.sleep_forever()  # a reader that never gets to this publish's event

    async def delivered(position: Any) -> None:
        waiting.set()
        await real_delivered(position)

    reader._read_batch = stalled_read  # type: ignore[method-assign]
    reader.delivered = delivered  # type: ignore[method-assign]

    async def publish(broker: Broker) -> None:
        outcome.append(await broker.publish("t", "x"))
        returned.set()

    async with anyio.create_task_group() as group:
        async with Broker(redis_backend) as broker:
            group.start_soon(publish, broker)
            with anyio.fail_after(5):
                await waiting.wait()
        with anyio.fail_after(5):
            await returned.wait()
    assert outcome[0].event.data == "x"


@pytest.mark.anyio
async def test_a_transient_event_reaches_every_hub_and_no_history(prefix: str) -> None:
    from ssehub.broker.transient import publish_transient

    async with (
        Broker(backend(prefix)) as hub_a,
        Broker(backend(prefix)) as hub_b,
        hub_b.subscribe("notice") as on_b,
    ):
        sent = await publish_transient(hub_a, "notice", "x", private=True)
        with anyio.fail_after(5):
            assert [item.id for item in await on_b.receive()] == [sent.id]  # type: ignore[union-attr]
        assert await hub_a.backend.history_sizes(["notice"]) == {"notice": 0}
