"""Byte budgets of channels (issue 18 item 1): messages, history, and what listeners queue.

A channel refuses a message larger than ``max_event_size`` (nothing is stored), keeps its
history within the byte bounds like the hub's topics, shares one byte budget with the other
channels of its registry, and bounds what a listener queues in bytes: a listener that does not
read drops its queue and catches up from history when it reads (senders wait under ``block``).
"""

from __future__ import annotations

import anyio
import pytest

from ssehub import EventTooLarge
from ssehub.broker.history import HistoryBudget
from ssehub.channels import Channel, ChannelRegistry, Message
from ssehub.testing import drain_listener

pytestmark = pytest.mark.anyio

KIB = 1024
PAYLOAD = "p" * 10_000


def budget(**bounds: int) -> HistoryBudget:
    return HistoryBudget(**{"history_total_bytes": 64 * KIB * KIB, **bounds})


async def test_a_message_over_max_event_size_is_refused_and_not_stored() -> None:
    async with Channel("c", budget=HistoryBudget(max_event_size=KIB)) as channel:
        channel.add_listener("w")
        for send in (
            channel.broadcast(Message("job", "x" * KIB)),
            channel.dispatch("w", Message("job", "x" * KIB)),
        ):
            with pytest.raises(EventTooLarge) as raised:
                await send
            assert raised.value.limit == KIB
        assert await drain_listener(channel, "w") == []
        assert channel.statistics().published == 0


async def cost_of(payload: object) -> int:
    """What a message of ``payload`` costs in a channel's history (and a listener's queue)."""
    async with Channel("probe") as probe:
        probe.add_listener("l")
        await probe.dispatch("l", Message("job", payload))
        ((_, cost),) = (await probe._backend.history_usage()).values()
        return cost


async def test_a_listener_that_does_not_read_drops_its_queue_and_catches_up() -> None:
    one = await cost_of(PAYLOAD)
    async with Channel("c", budget=budget(history_bytes=int(5.5 * one))) as channel:
        reader = channel.add_listener("reader")
        sent = [await channel.dispatch("reader", Message("job", PAYLOAD)) for _ in range(5)]
        assert reader.statistics().queued == 5  # within its budget: all queued
        # The next would take it over: its queue goes (its memory with it), and it will catch
        # up from history when it reads. It fell behind further than history holds (the same
        # budget per topic), so it reads a reset message, then what came since, in order.
        for _ in range(3):
            sent.append(await channel.dispatch("reader", Message("job", PAYLOAD)))
            assert reader._queued_bytes <= 5.5 * one
        messages = await drain_listener(channel, "reader")
        assert [m.type for m in messages[:1]] == ["ssehub.reset"]
        assert messages[0].payload == {"reason": "expired"}
        assert [m.id for m in messages[1:]] == sent[5:]
        assert reader._queued_bytes == 0


async def test_a_listener_that_reads_keeps_every_message() -> None:
    one = await cost_of(PAYLOAD)
    async with Channel("c", budget=budget(history_bytes=int(3.5 * one))) as channel:
        channel.add_listener("reader")
        for _ in range(10):
            sent = [await channel.broadcast(Message("job", PAYLOAD)) for _ in range(3)]
            assert [m.id for m in await drain_listener(channel, "reader")] == sent


async def test_under_block_a_sender_waits_for_a_listener_to_read() -> None:
    one = await cost_of(PAYLOAD)
    budgeted = budget(history_bytes=int(3.5 * one))
    async with Channel("c", overflow="block", budget=budgeted) as channel:
        channel.add_listener("slow")
        with anyio.fail_after(5):
            for _ in range(3):
                await channel.dispatch("slow", Message("job", PAYLOAD))
        sent = anyio.Event()

        async def send_one_more() -> None:
            await channel.dispatch("slow", Message("job", PAYLOAD))
            sent.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(send_one_more)
                await anyio.wait_all_tasks_blocked()
                assert not sent.is_set()  # waiting for room in bytes
                await channel.deliver_next("slow")
                await sent.wait()
        assert len(await drain_listener(channel, "slow")) == 3  # nothing dropped under block


async def test_channels_of_a_registry_share_one_history_budget() -> None:
    one = await cost_of(PAYLOAD)
    # Each channel alone could hold 4.5 messages' worth; together they hold no more.
    shared = HistoryBudget(history_bytes=int(4.5 * one), history_total_bytes=int(4.5 * one))
    async with ChannelRegistry(budget=shared) as registry:
        first = await registry.create("first")
        second = await registry.create("second")
        start = first._backend.last_id
        early = [await first.broadcast(Message("m", PAYLOAD)) for _ in range(3)]
        await second.broadcast(Message("m", PAYLOAD))
        assert registry.pool.bytes <= 4.5 * one
        await second.broadcast(Message("m", PAYLOAD))  # over: the oldest of both channels goes
        assert await first._backend.history_sizes(["all"]) == {"all": 2}
        assert await second._backend.history_sizes(["all"]) == {"all": 2}
        assert (await first._backend.replay(["all"], start)).reset is not None
        assert [e.id for e in (await first._backend.replay(["all"], early[0])).events] == early[1:]
        registry.remove("second")
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()  # the channel's task has ended
        assert not second.running
        # A removed channel's history leaves the shared count.
        assert registry.pool.bytes == first._backend.history_bytes > 0
