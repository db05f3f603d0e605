"""Channel, Listener and Message: broadcast, dispatch, hooks, end of stream, policies, resume."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ssehub import (
    BrokerClosed,
    ChannelError,
    ConfigurationError,
    EventSourceResponse,
    EventValidationError,
    MessageRejected,
    NoMessages,
    UnknownListener,
)
from ssehub._exceptions import AlreadyExists
from ssehub.channels import END_OF_STREAM, Channel, Listener, ListenerState, Message
from ssehub.testing import drain_listener, stream_asgi

pytestmark = pytest.mark.anyio


# -- Message -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "a\nb", "a\rb", "a\0b", "x" * 257])
def test_message_type_is_validated(bad: str) -> None:
    with pytest.raises(EventValidationError):
        Message(bad)


def test_message_type_must_be_str() -> None:
    with pytest.raises(EventValidationError):
        Message(3)  # type: ignore[arg-type]


def test_message_id_is_ignored_in_comparisons() -> None:
    assert Message("a", [1], id="x-1") == Message("a", [1])
    assert Message.end().is_end
    assert Message.end().type == END_OF_STREAM


async def test_reserved_type_and_non_json_payload_are_refused_at_send() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener()
        with pytest.raises(EventValidationError):
            await channel.broadcast(Message("ssehub.other"))
        with pytest.raises(EventValidationError):
            await channel.dispatch(listener.id, Message("a", {1, 2}))
        with pytest.raises(EventValidationError):
            await channel.dispatch(listener.id, Message("a", float("nan")))
        assert await drain_listener(channel, listener.id) == []


# -- listeners -------------------------------------------------------------------------------


async def test_add_register_remove_and_unknown_ids() -> None:
    async with Channel("c", max_listeners=2) as channel:
        first = channel.add_listener()
        assert first.state is ListenerState.RUNNING
        assert first.channel is channel
        second = channel.register_listener(Listener("worker-2"))
        assert channel.listener_ids() == [first.id, "worker-2"]
        assert "worker-2" in channel
        assert len(channel) == 2
        with pytest.raises(ChannelError, match="maximum"):
            channel.add_listener()
        channel.remove_listener("worker-2")
        assert second.state is ListenerState.REMOVED
        with pytest.raises(AlreadyExists) as info:
            channel.add_listener(first.id)
        assert (info.value.kind, info.value.name) == ("listener", first.id)
        with pytest.raises(ConfigurationError):
            channel.register_listener(second)  # removed listeners cannot come back
        for call in (
            lambda: channel.remove_listener("nope"),
            lambda: channel.get_listener("nope"),
        ):
            with pytest.raises(UnknownListener):
                call()
        with pytest.raises(UnknownListener):
            await channel.dispatch("nope", Message("a"))
        with pytest.raises(UnknownListener):
            await channel.deliver_next("nope")
        with pytest.raises(UnknownListener):
            channel.message_stream("nope")
        with pytest.raises(UnknownListener):
            second.start()


def test_listener_ids_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        Listener("has/slash")
    with pytest.raises(ConfigurationError):
        Channel("bad name")
    assert len(Listener().id) == 16


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segments_are_no_names(name: str) -> None:
    # Clients resolve /channels/jobs/listeners/.. away: such a listener or channel could never
    # be reached (or deleted) over HTTP.
    with pytest.raises(ConfigurationError, match=r"not \. or \.\."):
        Listener(name)
    with pytest.raises(ConfigurationError):
        Channel(name)


@pytest.mark.parametrize("name", ["...", ".a", "a..", "v1.2", "-", "_"])
def test_other_names_with_dots_are_fine(name: str) -> None:
    assert Listener(name).id == name
    assert Channel(name).name == name


async def test_channel_must_be_running() -> None:
    channel = Channel("c")
    with pytest.raises(BrokerClosed):
        channel.add_listener()
    async with channel:
        listener = channel.add_listener()
    assert not channel.running
    assert len(channel) == 0
    assert listener.state is ListenerState.REMOVED
    with pytest.raises(BrokerClosed):
        await channel.broadcast(Message("a"))


# -- broadcast and dispatch -----------------------------------------------------------------


async def test_broadcast_reaches_all_dispatch_reaches_one() -> None:
    async with Channel("c") as channel:
        a = channel.add_listener("a")
        b = channel.add_listener("b")
        first = await channel.broadcast(Message("news", {"n": 1}))
        second = await channel.dispatch("b", Message("private", "only b"))
        assert first is not None
        assert second is not None
        got_a = await drain_listener(channel, a.id)
        got_b = await drain_listener(channel, b.id)
        assert got_a == [Message("news", {"n": 1})]
        assert got_b == [Message("news", {"n": 1}), Message("private", "only b")]
        assert [m.id for m in got_b] == [first, second]
        assert b.last_event_id == second
        with pytest.raises(NoMessages):
            await channel.deliver_next("a")
        stats = channel.statistics()
        assert (stats.listeners, stats.published, stats.delivered) == (2, 2, 3)


async def test_listener_registered_later_gets_only_later_messages() -> None:
    async with Channel("c") as channel:
        await channel.broadcast(Message("early"))
        late = channel.add_listener()
        await channel.broadcast(Message("late", None))
        assert await drain_listener(channel, late.id) == [Message("late")]


# -- hooks -----------------------------------------------------------------------------------


async def test_sync_hook_rejection_reaches_sender_and_nothing_is_delivered() -> None:
    def only_small(message: Message) -> None:
        if message.payload > 10:
            raise MessageRejected("too big")

    async with Channel("c") as channel:
        plain = channel.add_listener("plain")
        picky = channel.add_listener("picky", on_message=only_small)
        with pytest.raises(MessageRejected, match="too big"):
            await channel.broadcast(Message("n", 11))
        with pytest.raises(MessageRejected):
            await channel.dispatch(picky.id, Message("n", 12))
        await channel.broadcast(Message("n", 5))
        assert await drain_listener(channel, plain.id) == [Message("n", 5)]
        assert await drain_listener(channel, picky.id) == [Message("n", 5)]


async def test_async_hook_and_listener_removed_during_hook() -> None:
    entered = anyio.Event()
    release = anyio.Event()

    async def slow_check(message: Message) -> None:
        entered.set()
        await release.wait()
        if message.type == "bad":
            raise MessageRejected("bad type")

    async with Channel("c") as channel:
        listener = channel.add_listener("x", on_message=slow_check)
        release.set()
        with pytest.raises(MessageRejected):
            await channel.dispatch("x", Message("bad"))
        assert await channel.dispatch("x", Message("good")) is not None
        assert await drain_listener(channel, "x") == [Message("good")]

        release = anyio.Event()
        entered = anyio.Event()
        errors: list[BaseException] = []

        async def send() -> None:
            try:
                await channel.dispatch("x", Message("good"))
            except UnknownListener as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await entered.wait()
                channel.remove_listener("x")
                release.set()
        assert len(errors) == 1
        assert listener.statistics().delivered == 1


async def test_broadcast_checks_listeners_that_join_while_hooks_run() -> None:
    entered = anyio.Event()
    release = anyio.Event()

    async def waits(message: Message) -> None:
        entered.set()
        await release.wait()

    def refuses(message: Message) -> None:
        raise MessageRejected("no")

    async with Channel("c") as channel:
        channel.add_listener("slow", on_message=waits)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def send() -> None:
                    with pytest.raises(MessageRejected):
                        await channel.broadcast(Message("m"))

                tg.start_soon(send)
                await entered.wait()
                channel.add_listener("late", on_message=refuses)
                release.set()
        assert await drain_listener(channel, "slow") == []


# -- end of stream, stop and start ---------------------------------------------------------


async def test_end_message_stops_listener_after_queued_messages() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener()
        other = channel.add_listener()
        await channel.dispatch(listener.id, Message("a", 1))
        assert await channel.dispatch(listener.id, Message.end()) is None
        assert listener.state is ListenerState.STOPPED
        await channel.broadcast(Message("after"))
        assert await drain_until_end(channel, listener.id) == [Message("a", 1), Message.end()]
        assert await channel.deliver_next(listener.id) == Message.end()  # stays ended
        assert await channel.broadcast(Message.end()) is None
        assert await drain_until_end(channel, other.id) == [Message("after"), Message.end()]


async def drain_until_end(channel: Channel, listener_id: str) -> list[Message]:
    messages = [await channel.deliver_next(listener_id)]
    while not messages[-1].is_end:
        messages.append(await channel.deliver_next(listener_id))
    return messages


async def test_restart_resumes_after_last_delivered_message() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener()
        await channel.dispatch(listener.id, Message("one"))
        assert await channel.deliver_next(listener.id) == Message("one")
        listener.stop()
        listener.stop()  # idempotent
        await channel.dispatch(listener.id, Message("two"))  # sent while stopped
        listener.start()
        listener.start()  # idempotent
        await channel.broadcast(Message("three"))
        assert await drain_listener(channel, listener.id) == [Message("two"), Message("three")]


# -- overflow policies -----------------------------------------------------------------------


async def test_drop_oldest_marks_the_gap() -> None:
    async with Channel("c", queue_size=2, overflow="drop_oldest") as channel:
        listener = channel.add_listener()
        for n in range(4):
            await channel.broadcast(Message("n", n))
        assert await drain_listener(channel, listener.id) == [
            Message("ssehub.dropped", {"dropped": 2}),
            Message("n", 2),
            Message("n", 3),
        ]
        assert listener.statistics().dropped == 2


async def test_disconnect_policy_sheds_then_resumes_from_history() -> None:
    async with Channel("c", queue_size=2, overflow="disconnect") as channel:
        listener = channel.add_listener()
        await channel.broadcast(Message("n", 0))
        assert await channel.deliver_next(listener.id) == Message("n", 0)
        for n in range(1, 6):
            await channel.broadcast(Message("n", n))
        assert channel.statistics().shed == 1
        assert await drain_listener(channel, listener.id) == [Message("n", n) for n in range(1, 6)]


async def test_disconnect_policy_reports_reset_when_history_is_gone() -> None:
    async with Channel("c", queue_size=1, history_size=1) as channel:
        listener = channel.add_listener()
        await channel.broadcast(Message("n", 0))
        assert await channel.deliver_next(listener.id) == Message("n", 0)
        for n in range(1, 4):
            await channel.broadcast(Message("n", n))
        got = await drain_listener(channel, listener.id)
        assert got[0] == Message("ssehub.reset", {"reason": "expired"})


async def test_block_policy_makes_senders_wait_for_room() -> None:
    async with Channel("c", queue_size=1, overflow="block") as channel:
        listener = channel.add_listener()
        await channel.broadcast(Message("n", 0))
        sent = anyio.Event()

        async def send() -> None:
            await channel.broadcast(Message("n", 1))
            sent.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                assert not sent.is_set()
                assert await channel.deliver_next(listener.id) == Message("n", 0)
                await sent.wait()
        assert await channel.deliver_next(listener.id) == Message("n", 1)


# -- message streams -------------------------------------------------------------------------


async def test_message_stream_iterates_and_ends_with_end_message() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener()
        await channel.dispatch(listener.id, Message("a", [1]))
        await channel.broadcast(Message("b"))
        listener.stop()
        with anyio.fail_after(5):
            async with channel.message_stream(listener) as stream:
                assert stream.listener is listener
                with pytest.raises(ChannelError):
                    channel.message_stream(listener)  # one consumer at a time
                with pytest.raises(ChannelError):
                    await channel.deliver_next(listener.id)
                got = [message async for message in stream]
        assert got == [Message("a", [1]), Message("b"), Message.end()]
        assert listener.last_event_id == got[1].id


async def test_message_stream_waits_without_polling_and_remove_on_close() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener()
        received: list[Message] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    async with channel.message_stream(listener, remove_on_close=True) as stream:
                        received.extend([message async for message in stream])

                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                await channel.dispatch(listener.id, Message("x"))
                channel.remove_listener(listener.id)
        assert received == [Message("x"), Message.end()]
        assert len(channel) == 0

        other = channel.add_listener()
        async with channel.message_stream(other, remove_on_close=True):
            pass
        assert other.id not in channel


async def stream_endpoint(channel: Channel, listener_id: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        last = dict(scope["headers"]).get(b"last-event-id")
        stream = channel.message_stream(listener_id, last_event_id=last.decode() if last else None)
        await EventSourceResponse(stream, ping=0)(scope, receive, send)

    return app


async def test_event_source_response_streams_ids_and_resumes() -> None:
    async with Channel("c") as channel:
        listener = channel.add_listener("web")
        ids = [await channel.broadcast(Message("tick", n)) for n in range(3)]
        app = await stream_endpoint(channel, "web")
        with anyio.fail_after(5):
            async with stream_asgi(app, "/events") as stream:
                events = await stream.events().take(3)
                assert [(e.event, e.data, e.id) for e in events] == [
                    ("tick", str(n), ids[n]) for n in range(3)
                ]
                await stream.disconnect()
            # Reconnect with the first id: the rest is replayed from history, then live.
            headers = {"Last-Event-ID": ids[0] or ""}
            async with stream_asgi(app, "/events", headers=headers) as stream:
                events = await stream.events().take(2)
                assert [e.data for e in events] == ["1", "2"]
                await channel.dispatch("web", Message("bye", "now"))
                await channel.dispatch("web", Message.end())
                rest = await stream.events().rest()
        assert [(e.event, e.data) for e in rest] == [("bye", '"now"'), (END_OF_STREAM, "null")]
        assert listener.state is ListenerState.STOPPED
