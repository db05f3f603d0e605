"""Publishing: data encoding, validation, ids, multi-topic fan-out, batches, threads, closing."""

from __future__ import annotations

import threading

import anyio
import pytest

from ssehub import (
    BrokerClosed,
    ConfigurationError,
    EventValidationError,
    InvalidTopic,
    ServerSentEvent,
)
from ssehub._frames import FrameSource
from ssehub.broker import Broker, EndReason, OverflowPolicy, Publication, StoredEvent

pytestmark = pytest.mark.anyio


async def test_str_data_is_verbatim_and_json_values_are_compact() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        text = await broker.publish("t", "line 1\nline 2", event="note", retry=1500)
        obj = await broker.publish("t", {"b": [1, 2], "é": None})
        number = await broker.publish("t", 3)
        null = await broker.publish("t", None)
        with anyio.fail_after(5):
            frames = [item.encode() for item in await sub.receive()]
    assert frames == [
        f"id: {text.id}\nevent: note\ndata: line 1\ndata: line 2\nretry: 1500\n\n".encode(),
        f'id: {obj.id}\ndata: {{"b":[1,2],"é":null}}\n\n'.encode(),
        f"id: {number.id}\ndata: 3\n\n".encode(),
        f"id: {null.id}\ndata: null\n\n".encode(),
    ]


async def test_server_sent_event_data_keeps_fields_but_gets_broker_id() -> None:
    async with Broker() as broker:
        stored = await broker.publish("t", ServerSentEvent("x", event="e", id="mine", comment="c"))
    assert stored.event == ServerSentEvent("x", event="e", id=stored.id, comment="c")
    assert stored.id != "mine"


async def test_frames_are_encoded_once_and_shared() -> None:
    async with Broker() as broker:
        subs = [broker.subscribe("t") for _ in range(3)]
        stored = await broker.publish("t", "x")
        with anyio.fail_after(5):
            frames = [[item.encode() for item in await sub.receive()] for sub in subs]
    assert all(frame[0] is stored.encode() for frame in frames)
    assert all(isinstance(sub, FrameSource) for sub in subs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event": "a\nb"}, "event"),
        ({"event": "a\rb"}, "event"),
        ({"event": "ssehub.reset"}, "event"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
    ],
)
async def test_invalid_fields_raise(kwargs: dict[str, object], field: str) -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with pytest.raises(EventValidationError) as info:
            await broker.publish("t", "x", **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
        assert broker.statistics().published == 0
        assert sub.statistics().queued == 0


async def test_non_json_data_raises() -> None:
    async with Broker() as broker:
        with pytest.raises(EventValidationError):
            await broker.publish("t", {1, 2})
        with pytest.raises(EventValidationError):
            await broker.publish("t", object())


@pytest.mark.parametrize(
    "topics",
    ["", "a b", "x\n", "é", "a" * 257, [], ["ok", ""], [f"t{i}" for i in range(33)], 42],
)
async def test_invalid_topics_raise(topics: object) -> None:
    async with Broker() as broker:
        with pytest.raises(InvalidTopic):
            await broker.publish(topics, "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidTopic):
            broker.subscribe(topics)  # type: ignore[arg-type]
        assert broker.statistics().subscribers == 0


async def test_url_topics_are_valid() -> None:
    topic = "https://example.com/books/1?x=y#z"
    async with Broker() as broker:
        sub = broker.subscribe([topic, "a" * 256])
        await broker.publish(topic, "x")
        assert sub.statistics().queued == 1


async def test_event_on_two_subscribed_topics_is_delivered_once() -> None:
    async with Broker() as broker:
        both = broker.subscribe(["a", "b"])
        only_b = broker.subscribe("b")
        stored = await broker.publish(["a", "b", "a"], "x")
        assert stored.topics == ("a", "b")
        assert broker.subscriber_count(["a", "b"]) == 2
        with anyio.fail_after(5):
            assert await both.receive() == [stored]
            assert await only_b.receive() == [stored]


async def test_publish_many_publishes_in_order() -> None:
    async with Broker() as broker:
        sub = broker.subscribe(["a", "b"])
        stored = await broker.publish_many(
            [Publication("a", "1"), Publication("b", {"n": 2}, event="e"), Publication("a", "3")]
        )
        assert await broker.publish_many([]) == []
        with anyio.fail_after(5):
            items = await sub.receive()
    assert items == stored
    assert [event.event.data for event in stored] == ["1", '{"n":2}', "3"]
    assert broker.statistics().published == 3


async def test_publish_from_plain_thread() -> None:
    results: list[StoredEvent] = []
    errors: list[BaseException] = []
    async with Broker() as broker:
        sub = broker.subscribe("t")

        def work() -> None:
            try:
                results.extend(broker.publish_threadsafe("t", str(i)) for i in range(20))
                results.extend(broker.publish_many_threadsafe([Publication("t", "last")]))
            except BaseException as exc:  # reported to the test below
                errors.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        received: list[object] = []
        with anyio.fail_after(5):
            while len(received) < 21:
                received.extend(await sub.receive())
        await anyio.to_thread.run_sync(thread.join)
    assert errors == []
    assert received == results
    assert [event.event.data for event in results] == [*map(str, range(20)), "last"]


async def test_publish_threadsafe_from_loop_thread_is_refused() -> None:
    async with Broker() as broker:
        with pytest.raises(RuntimeError):
            broker.publish_threadsafe("t", "x")


def test_publish_threadsafe_after_shutdown_raises() -> None:
    async def main() -> Broker:
        async with Broker() as broker:
            pass
        return broker

    broker = anyio.run(main)
    with pytest.raises(BrokerClosed):
        broker.publish_threadsafe("t", "x")


async def test_closed_broker_refuses_publish_and_subscribe() -> None:
    broker = Broker()
    with pytest.raises(BrokerClosed):
        await broker.publish("t", "x")
    with pytest.raises(BrokerClosed):
        broker.subscribe("t")
    async with broker:
        assert broker.running
    assert not broker.running
    with pytest.raises(BrokerClosed):
        await broker.publish("t", "x")
    with pytest.raises(BrokerClosed):
        await broker.publish_many([Publication("t", "x")])
    with pytest.raises(BrokerClosed):
        broker.subscribe("t")
    with pytest.raises(BrokerClosed):
        async with broker:
            pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "nosuch://x"},
        {"backend": "memory://host"},
        {"queue_size": 0},
        {"overflow": "sometimes"},
        {"max_connection_age": 0},
        {"max_connection_age": 10, "max_connection_age_jitter": 1.0},
        {"max_topics_per_subscription": 0},
        {"history_size": 0},
        {"history_ttl": 0},
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Broker(**kwargs)  # type: ignore[arg-type]


def test_redis_scheme_hook_is_reported_clearly() -> None:
    # Until ssehub/backends/redis.py exists this is a ConfigurationError naming the scheme; once
    # it exists, the URL is handed to RedisBackend.from_url (tested by the Redis suite).
    try:
        import ssehub.backends.redis  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ConfigurationError, match="redis"):
            Broker("redis://127.0.0.1:6379/0")


def test_overflow_policy_accepts_names() -> None:
    assert OverflowPolicy.parse("drop-oldest") is OverflowPolicy.DROP_OLDEST
    assert OverflowPolicy.parse("BLOCK") is OverflowPolicy.BLOCK
    assert Broker(overflow="drop_oldest").overflow is OverflowPolicy.DROP_OLDEST


@pytest.mark.parametrize("many", [False, True])
async def test_cancelled_publish_stores_nothing(many: bool) -> None:
    # trio's rule: a call that raised Cancelled did nothing, so a retry cannot duplicate it.
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.CancelScope() as scope:
            scope.cancel()
            if many:
                await broker.publish_many([Publication("t", "x")])
            else:
                await broker.publish("t", "x")
        assert scope.cancelled_caught
        assert sub.receive_nowait() == []
        assert await broker.backend.history_sizes(["t"]) == {"t": 0}
        assert broker.statistics().published == 0


async def test_publish_that_stored_returns_even_if_cancelled_meanwhile() -> None:
    # The scope is cancelled by a subscriber's callback during the fan-out: the event is stored
    # and delivered, so publish returns it rather than raise Cancelled.
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.CancelScope() as scope:
            sub.on_ready(scope.cancel)
            stored = await broker.publish("t", "x")
        assert not scope.cancelled_caught
        assert sub.receive_nowait() == [stored]


async def test_on_ready_callback_that_closes_subscriptions_spares_the_fanout() -> None:
    async with Broker() as broker:
        first = broker.subscribe("t")
        first.on_ready(first.close)  # "one event is enough"
        second = broker.subscribe("t")
        third = broker.subscribe("t")
        second.on_ready(third.close)  # closes one the fan-out has not reached yet
        stored = await broker.publish("t", "x")
        assert first.closed
        assert third.closed
        assert first.receive_nowait() == [stored]
        assert second.receive_nowait() == [stored]
        assert third.receive_nowait() == []  # closed before the fan-out reached it
        assert broker.statistics().subscribers == 1


async def test_on_ready_callback_that_raises_is_logged_and_spares_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise RuntimeError("consumer bug")

    async with Broker() as broker:
        first = broker.subscribe("t")
        first.on_ready(fail)
        second = broker.subscribe("t")
        stored = await broker.publish("t", "x")
        assert second.receive_nowait() == [stored]
        assert first.receive_nowait() == [stored]
    assert "on_ready callback failed" in caplog.text


async def test_visible_that_raises_withholds_the_event_and_spares_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(event: StoredEvent) -> bool:
        raise KeyError("grant lookup failed")

    async with Broker() as broker:
        start = await broker.publish("t", "start")
        before = await broker.publish("t", "before", private=True)
        after = await broker.publish("t", "after")
        hidden = broker.subscribe("t", visible=fail)
        other = broker.subscribe("t")
        resuming = broker.subscribe("t", last_event_id=start.id, visible=fail)
        stored = await broker.publish("t", "secret", private=True)
        assert other.receive_nowait() == [stored]
        assert hidden.receive_nowait() == []
        await resuming.prepare()  # the replay is filtered with the same guard
        assert resuming.receive_nowait() == [after]
        assert before.private
        public = await broker.publish("t", "public")
        assert hidden.receive_nowait() == [public]
    assert "visible() failed" in caplog.text


async def test_an_on_ready_callback_that_raises_while_shed_spares_the_rest_of_the_shed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise RuntimeError("consumer bug")

    async with Broker(queue_size=1) as broker:
        subscriptions = [broker.subscribe("t") for _ in range(3)]
        await broker.publish("t", "fills every queue")
        subscriptions[0].on_ready(fail)
        await broker.publish("t", "sheds them all")
        assert [sub.end_reason for sub in subscriptions] == [EndReason.SHED] * 3
        assert broker.statistics().subscribers == 0
    assert "on_ready callback failed" in caplog.text


def test_a_publish_whose_asyncio_task_was_cancelled_stores_nothing() -> None:
    # Native asyncio cancellation (task.cancel(), asyncio.timeout), not only anyio's scopes.
    import asyncio

    async def main() -> None:
        async with Broker() as broker:
            sub = broker.subscribe("t")

            async def publish() -> None:
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await broker.publish("t", "x")

            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(publish())
            assert sub.receive_nowait() == []
            assert await broker.backend.history_sizes(["t"]) == {"t": 0}

    asyncio.run(main())


def test_a_publish_racing_the_broker_close_is_refused_not_lost() -> None:
    # asyncio only: its scheduling makes the race deterministic (the publisher runs up to its
    # checkpoint, then the broker closes). The publish must then fail, not store into the
    # closed broker's backend and answer success while nobody gets the event.
    import asyncio

    async def main() -> None:
        broker = Broker()
        outcome: list[object] = []

        async def publisher() -> None:
            try:
                outcome.append(await broker.publish("t", "late"))
            except BrokerClosed as exc:
                outcome.append(exc)

        await broker.__aenter__()
        sub = broker.subscribe("t")
        task = asyncio.get_running_loop().create_task(publisher())
        await anyio.lowlevel.checkpoint()  # the publisher runs up to its checkpoint
        await broker.__aexit__(None, None, None)
        await task
        assert [type(item) for item in outcome] == [BrokerClosed]
        assert await broker.backend.history_sizes(["t"]) == {"t": 0}
        assert sub.receive_nowait() == []

    asyncio.run(main())


async def test_a_cancelled_publish_with_a_chosen_id_stores_nothing() -> None:
    from ssehub.broker.chosen_ids import publish_with_id

    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await publish_with_id(broker, "t", "x", event_id="mine-1")
        assert scope.cancelled_caught
        assert sub.receive_nowait() == []
        assert await broker.backend.history_sizes(["t"]) == {"t": 0}
