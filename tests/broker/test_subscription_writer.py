"""Direct writes (Subscription.attach_writer): what goes to the writer, what is queued, in order."""

from __future__ import annotations

import anyio
import pytest

from ssehub.broker import Broker, Dropped, EndReason, Reset, StoredEvent
from ssehub.broker.events import ResetReason
from ssehub.hub._auth import Principal
from ssehub.hub._guard import VisibleEvents
from ssehub.hub._patterns import NOTHING, TopicPatterns

pytestmark = pytest.mark.anyio


class RecordingWriter:
    """A FrameWriter that keeps what it is given, and refuses while ``full`` is set."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.full = False
        self.last_write = 0.0

    def __call__(self, frame: bytes) -> bool:
        if self.full:
            return False
        self.frames.append(frame)
        self.last_write += 1
        return True


async def test_live_events_go_to_the_writer_and_are_counted_delivered() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        writer = RecordingWriter()
        sub.attach_writer(writer)
        stored = [await broker.publish("t", str(i)) for i in range(3)]
        assert writer.frames == [event.encode() for event in stored]
        # Nothing was queued, and the consumer has nothing to receive.
        assert sub.statistics() == (0, 0, 0, 3)
        assert broker.statistics().delivered == 3
        with anyio.move_on_after(0.05) as scope:
            await sub.receive()
        assert scope.cancel_called


async def test_a_refused_frame_and_every_later_one_are_queued_in_order() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        writer = RecordingWriter()
        sub.attach_writer(writer)
        first = await broker.publish("t", "direct")
        writer.full = True
        refused = await broker.publish("t", "refused")
        writer.full = False
        # The writer would take it, but an event is queued: it must not overtake that one.
        later = await broker.publish("t", "later")
        assert writer.frames == [first.encode()]
        assert sub.statistics().queued == 2
        with anyio.fail_after(5):
            assert await sub.receive() == [refused, later]
        # The queue is empty again: the next event is written directly.
        last = await broker.publish("t", "direct again")
        assert writer.frames == [first.encode(), last.encode()]
        assert sub.statistics().delivered == 4


async def test_a_detached_writer_gets_nothing() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        writer = RecordingWriter()
        sub.attach_writer(writer)
        sub.attach_writer(None)
        stored = await broker.publish("t", "x")
        assert writer.frames == []
        with anyio.fail_after(5):
            assert await sub.receive() == [stored]


async def test_an_ended_subscription_drops_its_writer_and_ignores_new_ones() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        other = broker.subscribe("t")
        writer = RecordingWriter()
        sub.attach_writer(writer)
        sub.close()
        sub.attach_writer(writer)
        await broker.publish("t", "after close")
        assert writer.frames == []
        assert sub.end_reason is EndReason.CLOSED
        other.close()


async def test_no_direct_write_before_a_replay_or_a_reset_notice_was_received() -> None:
    async with Broker() as broker:
        first = await broker.publish("t", "first")
        second = await broker.publish("t", "second")
        resumed = broker.subscribe("t", last_event_id="0")  # not an id of ours: a reset
        replaying = broker.subscribe("t", last_event_id=first.id)  # "second" to replay
        await resumed.prepare()
        await replaying.prepare()
        writers = RecordingWriter(), RecordingWriter()
        resumed.attach_writer(writers[0])
        replaying.attach_writer(writers[1])
        new = await broker.publish("t", "new")
        assert writers[0].frames == writers[1].frames == []
        with anyio.fail_after(5):
            items = await resumed.receive()
        assert isinstance(items[0], Reset)
        assert items[0].reason in (ResetReason.UNKNOWN, ResetReason.MALFORMED)
        assert items[1:] == [new]
        with anyio.fail_after(5):
            assert await replaying.receive() == [second, new]
        # Caught up: now they may write directly.
        resumed.attach_writer(writers[0])
        replaying.attach_writer(writers[1])
        newer = await broker.publish("t", "newer")
        assert writers[0].frames == writers[1].frames == [newer.encode()]


async def test_drop_oldest_notice_is_never_overtaken_by_a_direct_write() -> None:
    async with Broker(queue_size=1, overflow="drop_oldest") as broker:
        sub = broker.subscribe("t")
        await broker.publish("t", "a")
        kept = await broker.publish("t", "b")  # drops "a"
        writer = RecordingWriter()
        sub.attach_writer(writer)
        newest = await broker.publish("t", "c")  # queue full: drops "b", queues "c"
        assert writer.frames == []
        with anyio.fail_after(5):
            items = await sub.receive()
        assert items == [Dropped(2), newest]
        assert kept not in items


def _reader(granted: str) -> Principal:
    # A token granted one topic, allowed to read public events of every other topic.
    return Principal("token", NOTHING, TopicPatterns([granted]), any_topic=True)


async def test_private_events_the_reader_may_not_see_are_skipped_not_written() -> None:
    async with Broker() as broker:
        sub = broker.subscribe(["granted", "other"])
        source = VisibleEvents(sub, _reader("granted"))
        writer = RecordingWriter()
        source.attach_writer(writer)
        hidden = await broker.publish("other", "secret", private=True)
        shown = await broker.publish("granted", "for you", private=True)
        public = await broker.publish("other", "everyone")
        assert writer.frames == [shown.encode(), public.encode()]
        assert hidden.encode() not in writer.frames
        assert sub.statistics().queued == 0


async def test_one_event_is_one_bytes_object_for_every_writer() -> None:
    async with Broker() as broker:
        writers = [RecordingWriter() for _ in range(5)]
        for writer in writers:
            broker.subscribe("t").attach_writer(writer)
        stored: StoredEvent = await broker.publish("t", "x")
        assert all(writer.frames[0] is stored.encode() for writer in writers)


# -- interrupt(): how a response parked without a cancel scope is woken for a ping -------------


async def test_interrupt_makes_a_pending_receive_return_nothing_without_ending() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        got: list[list[bytes]] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:

                async def receive() -> None:
                    got.append(await sub.receive_frames())

                group.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                sub.interrupt()
            assert got == [[]]
            assert not sub.closed
            # The interruption was used up: the next receive waits for an event.
            stored = await broker.publish("t", "after")
            assert await sub.receive_frames() == [stored.encode()]


async def test_an_interrupt_with_no_receive_pending_applies_to_the_next_one_once() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        sub.interrupt()
        with anyio.fail_after(5):
            assert await sub.receive_frames() == []
        with anyio.move_on_after(0.05) as scope:
            await sub.receive_frames()
        assert scope.cancel_called  # waited: the interruption counted once
        assert not sub.closed


async def test_pending_frames_come_first_and_the_interrupt_with_the_next_receive() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        stored = await broker.publish("t", "queued")
        sub.interrupt()
        with anyio.fail_after(5):
            assert await sub.receive_frames() == [stored.encode()]
            assert await sub.receive_frames() == []
        with anyio.move_on_after(0.05) as scope:
            await sub.receive_frames()
        assert scope.cancel_called  # one interrupt, one []
        assert not sub.closed


async def test_visible_events_pass_an_interrupt_through_even_after_hidden_events() -> None:
    async with Broker() as broker:
        sub = broker.subscribe(["granted", "other"])
        source = VisibleEvents(sub, _reader("granted"))
        await broker.publish("other", "secret", private=True)
        sub.interrupt()  # as the alarm would, while the hidden event is pending
        with anyio.fail_after(5):
            # Nothing readable: the hidden event is skipped and the interruption comes
            # through, rather than the reader waiting on with no alarm armed.
            assert await source.receive_frames() == []
        assert not sub.closed


async def test_visible_events_pass_an_interrupt_through() -> None:
    async with Broker() as broker:
        sub = broker.subscribe("t")
        source = VisibleEvents(sub, _reader("t"))
        source.interrupt()
        with anyio.fail_after(5):
            assert await source.receive_frames() == []
        assert not sub.closed
        source.close()
        with anyio.fail_after(5):
            assert await source.receive_frames() == []
        assert sub.closed
