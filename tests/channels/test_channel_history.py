"""What a listener may replay: only messages addressed to it, and nothing of a removed listener.

A listener's replay (``Last-Event-ID``, a restart, a catch-up after being shed) contains only
messages published after it joined and accepted by its hook; removing a listener releases its
private history at once, so a new listener with the same id cannot read it and memory does not
grow with every listener that ever existed.
"""

from __future__ import annotations

import anyio
import pytest

from ssehub import MessageRejected, UnknownListener
from ssehub.channels import Channel, Message, MessageStream
from ssehub.testing import drain_listener

pytestmark = pytest.mark.anyio


async def first_message(stream: MessageStream) -> Message:
    with anyio.fail_after(5):
        return await stream.__anext__()


async def test_new_listener_with_a_removed_ones_id_replays_none_of_its_messages() -> None:
    async with Channel("c") as channel:
        channel.add_listener("alice")
        secret = await channel.dispatch("alice", Message("secret", "for the first alice"))
        await channel.dispatch("alice", Message("secret", "also hers"))
        channel.remove_listener("alice")
        channel.add_listener("alice")  # a new incarnation, e.g. POST .../listeners {"id": ...}
        async with channel.message_stream("alice", last_event_id=secret) as stream:
            await channel.dispatch("alice", Message("fresh"))
            assert await first_message(stream) == Message("fresh")


async def test_removing_listeners_releases_their_private_history() -> None:
    async with Channel("c") as channel:
        with anyio.fail_after(60):
            for n in range(3000):
                listener = channel.add_listener(f"l{n}")
                for k in range(5):
                    await channel.dispatch(listener.id, Message("job", k))
                assert len(await drain_listener(channel, listener.id)) == 5
                channel.remove_listener(listener.id)
        assert await channel._backend.history_sizes() == {}  # not 3000 topics, 15 000 events
        assert channel._broker.statistics().topics == 0
        assert channel.statistics().published == 15_000


async def test_replay_skips_broadcasts_from_before_the_listener_joined() -> None:
    def refuse_all_but_markers(message: Message) -> None:
        if message.type != "marker":
            raise MessageRejected("not for me")

    async with Channel("c") as channel:
        early = [await channel.broadcast(Message("early", n)) for n in range(3)]
        picky = channel.add_listener("picky", on_message=refuse_all_but_markers)
        with pytest.raises(MessageRejected):
            await channel.broadcast(Message("later"))
        async with channel.message_stream(picky, last_event_id=early[0]) as stream:
            await channel.dispatch("picky", Message("marker"))
            # Its hook never saw "early" 1 and 2: resuming from before it joined replays none.
            assert await first_message(stream) == Message("marker")


async def test_resume_after_the_join_point_is_still_exact() -> None:
    async with Channel("c") as channel:
        await channel.broadcast(Message("before"))
        listener = channel.add_listener()
        first = await channel.dispatch(listener.id, Message("n", 1))
        await channel.broadcast(Message("n", 2))
        await channel.dispatch(listener.id, Message("n", 3))
        async with channel.message_stream(listener, last_event_id=first) as stream:
            got = [await first_message(stream) for _ in range(2)]
        assert got == [Message("n", 2), Message("n", 3)]


async def test_unknown_and_malformed_ids_still_reset() -> None:
    async with Channel("c") as other:
        foreign = await other.broadcast(Message("x"))
    async with Channel("c") as channel:
        listener = channel.add_listener()
        for bad, reason in ((foreign, "unknown"), ("not an id!", "malformed")):
            async with channel.message_stream(listener, last_event_id=bad) as stream:
                assert await first_message(stream) == Message("ssehub.reset", {"reason": reason})


async def test_restart_before_any_delivery_replays_what_was_sent_while_stopped() -> None:
    async with Channel("c") as channel:
        await channel.broadcast(Message("before it joined"))
        listener = channel.add_listener()
        listener.stop()
        await channel.dispatch(listener.id, Message("while stopped"))
        listener.start()
        assert await drain_listener(channel, listener.id) == [Message("while stopped")]


async def test_shed_before_any_delivery_catches_up_from_the_join_point() -> None:
    async with Channel("c", queue_size=2, overflow="disconnect") as channel:
        await channel.broadcast(Message("before it joined"))
        listener = channel.add_listener()
        for n in range(4):
            await channel.broadcast(Message("n", n))
        assert channel.statistics().shed == 1
        assert await drain_listener(channel, listener.id) == [Message("n", n) for n in range(4)]


async def test_dispatch_to_a_listener_removed_while_blocked_reaches_nobody() -> None:
    async with Channel("c", queue_size=1, overflow="block") as channel:
        channel.add_listener("alice")
        await channel.dispatch("alice", Message("n", 0))  # fills her queue

        async def blocked_dispatch() -> None:
            with pytest.raises(UnknownListener):
                await channel.dispatch("alice", Message("n", 1))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(blocked_dispatch)
                await anyio.wait_all_tasks_blocked()  # waiting for room in alice's queue
                channel.remove_listener("alice")
                channel.add_listener("alice")  # the same id again, before the sender wakes
        assert await drain_listener(channel, "alice") == []
        assert await channel._backend.history_sizes() == {}
