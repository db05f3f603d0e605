"""Batching: the pure policy on a manual clock, the async driver, and unbatching."""

from __future__ import annotations

import json
import random
from collections import deque

import anyio
import pytest

from ssehub import ConfigurationError, SchemaValidationError
from ssehub.protocols import BATCH_EVENT, BatchPolicy, batch_event, batched, unbatch
from ssehub.testing import ManualClock
from ssehub.wire import EventParser, MessageEvent, ServerSentEvent, parse


def ev(i: int, kind: str = "tick") -> ServerSentEvent:
    return ServerSentEvent(f'{{"n":{i}}}', event=kind, id=i)


def test_count_bound_flushes_a_batch_with_the_last_id() -> None:
    policy = BatchPolicy(max_count=3, clock=ManualClock())
    assert policy.add(ev(1)) == []
    assert policy.add(ev(2)) == []
    [batch] = policy.add(ev(3))
    assert (batch.event, batch.id) == (BATCH_EVENT, "3")
    assert json.loads(batch.data or "") == {
        "events": [
            {"id": "1", "event": "tick", "data": '{"n":1}'},
            {"id": "2", "event": "tick", "data": '{"n":2}'},
            {"id": "3", "event": "tick", "data": '{"n":3}'},
        ]
    }
    assert policy.pending == 0
    assert policy.deadline() is None


def test_delay_bound_on_a_manual_clock() -> None:
    clock = ManualClock(100.0)
    policy = BatchPolicy(max_delay=0.5, clock=clock)
    policy.add(ev(1))
    assert policy.deadline() == 100.5
    clock.advance(0.2)
    policy.add(ev(2))
    assert policy.deadline() == 100.5  # the first pending event sets the deadline
    assert policy.poll() == []
    clock.advance(0.3)
    [batch] = policy.poll()
    assert batch.id == "2"
    assert policy.deadline() is None
    assert policy.poll() == []


def test_byte_bound_flushes_before_overflowing() -> None:
    # The bound is on the encoded batch event, not on the sum of the lone events.
    size = len(batch_event([ev(1), ev(2)]).encode())
    policy = BatchPolicy(max_bytes=size, clock=ManualClock())
    assert policy.add(ev(1)) == []
    assert policy.add(ev(2)) == []  # exactly at the bound: allowed
    [batch] = policy.add(ev(3))  # 3 would overflow: 1 and 2 go out, 3 starts a new batch
    assert len(batch.encode()) == size
    assert [m.id for m in unbatch(parse(batch.encode())[0])] == ["1", "2"]
    assert policy.pending == 1


def test_byte_bound_is_exact_one_byte_below() -> None:
    size = len(batch_event([ev(1), ev(2)]).encode())
    policy = BatchPolicy(max_bytes=size - 1, clock=ManualClock())
    assert policy.add(ev(1)) == []
    assert policy.add(ev(2)) == [ev(1)]  # the batch of two would be one byte too large
    assert policy.pending == 1


def test_oversized_event_goes_alone_after_the_pending_batch() -> None:
    small = ServerSentEvent("1", event="tick", id=1)
    policy = BatchPolicy(max_bytes=len(batch_event([small, small]).encode()), clock=ManualClock())
    big = ServerSentEvent("x" * 1000, event="tick", id=2)
    assert policy.add(small) == []
    assert policy.add(big) == [small, big]  # a batch of one is the plain event
    assert policy.pending == 0
    assert policy.deadline() is None


def test_an_event_no_other_can_join_goes_out_at_once() -> None:
    # Even a batch holding only this event would reach the bound: waiting for the deadline
    # could not produce a batch, only latency.
    lone = ServerSentEvent("1", event="tick", id=1)
    policy = BatchPolicy(max_bytes=len(lone.encode()) + 1, clock=ManualClock())
    assert policy.add(lone) == [lone]
    assert policy.pending == 0


# Characters that JSON-in-JSON escaping inflates: a quote or a backslash becomes 2 bytes (and
# each escape of an escape 2 more), a control character 6 (\u0001), CR and LF 2; non-ASCII
# stays raw UTF-8 of 2 to 4 bytes.
HOSTILE = ['"', "\\", '\\"', "\x01", "\x1f", "\n", "\r\n", "\t", "é", "漢", "😀", "a", "/"]


def hostile_events(count: int, seed: int, max_len: int = 120) -> list[ServerSentEvent]:
    """Events whose data is JSON full of characters that escaping inflates."""
    rng = random.Random(seed)
    events = []
    for n in range(1, count + 1):
        text = "".join(rng.choice(HOSTILE) for _ in range(rng.randrange(0, max_len)))
        data = json.dumps({"n": n, "text": text}, ensure_ascii=rng.random() < 0.3)
        event_id = None if rng.random() < 0.2 else f"id-{n}-é"
        events.append(ServerSentEvent(data, event="tick", id=event_id))
    return events


@pytest.mark.parametrize("max_bytes", [300, 1000, 4096])
def test_encoded_batches_never_exceed_max_bytes_with_escape_heavy_payloads(
    max_bytes: int,
) -> None:
    clock = ManualClock()
    policy = BatchPolicy(max_count=1000, max_bytes=max_bytes, max_delay=1.0, clock=clock)
    events = hostile_events(400, seed=max_bytes, max_len=max_bytes // 8)
    out: list[ServerSentEvent] = []
    for index, event in enumerate(events):
        out.extend(policy.add(event))
        if index % 7 == 0:
            clock.advance(0.5)  # some batches end by the deadline, not by bytes
            out.extend(policy.poll())
    out.extend(policy.flush())
    batches = [e for e in out if e.event == BATCH_EVENT]
    assert len(batches) > 10  # the test exercises batches, not just lone events
    for batch in batches:
        assert len(batch.encode()) <= max_bytes
    for lone in (e for e in out if e.event != BATCH_EVENT):
        # A lone event is within the bound, or too large to ever share a batch.
        assert lone in events
    # Nothing lost, duplicated or reordered, and every item keeps its id (or inherits one).
    parser = EventParser()
    received = []
    for message in parser.feed(b"".join(e.encode() for e in out)):
        received.extend(unbatch(message, received[-1].id if received else ""))
    assert [m.data for m in received] == [e.data for e in events]
    running = ""
    for message, event in zip(received, events, strict=True):
        running = event.id if event.id is not None else running
        assert message.id == running


def test_byte_bound_fills_batches_close_to_the_bound() -> None:
    # Exact accounting: a batch flushed by the byte bound would have overflowed with the next
    # item (no safety margin wastes space).
    policy = BatchPolicy(max_count=1000, max_bytes=1000, clock=ManualClock())
    events = hostile_events(200, seed=7)
    for index, event in enumerate(events):
        for due in policy.add(event):
            if due.event == BATCH_EVENT:
                items = unbatch(parse(due.encode())[0])
                batched_events = events[index - len(items) : index]
                assert [m.data for m in items] == [e.data for e in batched_events]
                assert len(batch_event([*batched_events, event]).encode()) > 1000


def test_non_batchable_events_flush_first_and_keep_order() -> None:
    policy = BatchPolicy(kinds={"tick"}, clock=ManualClock())
    policy.add(ev(1))
    policy.add(ev(2))
    other = ev(3, kind="alert")
    out = policy.add(other)
    assert [e.event for e in out] == [BATCH_EVENT, "alert"]
    for special in (
        ServerSentEvent("x", event="tick", retry=10),
        ServerSentEvent(None, id=5),
        ServerSentEvent("x", event="tick", comment="c"),
    ):
        assert not policy.batchable(special)
        assert policy.add(special) == [special]
    assert BatchPolicy().batchable(ServerSentEvent("x"))  # kinds=None: every data event


def test_flush_of_one_is_the_plain_event() -> None:
    policy = BatchPolicy(clock=ManualClock())
    policy.add(ev(1))
    assert policy.flush() == [ev(1)]
    assert policy.flush() == []


@pytest.mark.parametrize("kwargs", [{"max_count": 0}, {"max_bytes": 0}, {"max_delay": 0}])
def test_invalid_policy(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        BatchPolicy(**kwargs)  # type: ignore[arg-type]


def test_batch_event_refuses_items_without_data() -> None:
    with pytest.raises(ConfigurationError):
        batch_event([ServerSentEvent(None, id=1), ev(2)])


def test_unbatch_preserves_order_ids_and_inherits_missing_ids() -> None:
    items = [
        ServerSentEvent("a", event="x", id="7"),
        ServerSentEvent("b"),  # no id, no event type
        ServerSentEvent("line1\nline2", event="y", id="9"),
    ]
    batch = batch_event(items)
    assert batch.id == "9"
    parser = EventParser(last_event_id="6")
    [message] = parser.feed(batch.encode())
    assert parser.last_event_id == "9"  # a browser's lastEventId lands where it would unbatched
    assert unbatch(message, "6") == [
        MessageEvent("a", "x", "7"),
        MessageEvent("b", "message", "7"),
        MessageEvent("line1\nline2", "y", "9"),
    ]


def test_batch_without_ids_keeps_the_previous_id() -> None:
    batch = batch_event([ServerSentEvent("a"), ServerSentEvent("b")])
    assert batch.id is None
    [message] = EventParser(last_event_id="5").feed(batch.encode())
    assert [m.id for m in unbatch(message, "5")] == ["5", "5"]


def test_unbatch_passes_other_events_through() -> None:
    message = MessageEvent("x", "tick", "1")
    assert unbatch(message) == [message]


@pytest.mark.parametrize(
    "data",
    [
        "nope",
        "[]",
        '{"events":{}}',
        '{"events":[{"id":"1"}]}',
        '{"events":[{"data":"x","id":1}]}',
        '{"events":[{"data":"x","event":null}]}',
        '{"events":[{"data":"x","id":"a\\u0000"}]}',
    ],
)
def test_malformed_batches(data: str) -> None:
    with pytest.raises(SchemaValidationError) as info:
        unbatch(MessageEvent(data, BATCH_EVENT))
    assert info.value.kind == BATCH_EVENT


class Source:
    """A cancellation-safe test source: items are removed only after waking."""

    def __init__(self) -> None:
        self.items: deque[ServerSentEvent] = deque()
        self.closed = False
        self.waiting = anyio.Event()
        self._wake = anyio.Event()

    def push(self, *items: ServerSentEvent) -> None:
        self.items.extend(items)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def receive(self) -> ServerSentEvent:
        while not self.items:
            if self.closed:
                raise anyio.EndOfStream
            self._wake = anyio.Event()
            self.waiting.set()
            await self._wake.wait()
        self.waiting = anyio.Event()
        return self.items.popleft()


@pytest.mark.anyio
async def test_batched_driver_flushes_on_the_manual_clock_deadline() -> None:
    clock = ManualClock()
    source = Source()
    policy = BatchPolicy(max_count=10, max_delay=1.0, clock=clock)
    out = []
    with anyio.fail_after(5):
        gen = batched(source, policy)
        source.push(ev(1), ev(2))
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                out.extend([await gen.__anext__()])

            tg.start_soon(consume)
            # The driver now waits for more items or the deadline: nothing is out yet.
            while clock.sleepers == 0:
                await anyio.lowlevel.checkpoint()
            assert out == []
            clock.advance(1.0)
        [batch] = out
        assert [m.id for m in unbatch(parse(batch.encode())[0])] == ["1", "2"]
        # A lone late event, then the end of the source: the pending event is flushed.
        source.push(ev(3))
        source.close()
        rest = [e async for e in gen]
        assert rest == [ev(3)]


@pytest.mark.anyio
async def test_batched_driver_without_policy_passes_events_one_by_one() -> None:
    source = Source()
    source.push(ev(1), ev(2))
    source.close()
    with anyio.fail_after(5):
        assert [e async for e in batched(source, None)] == [ev(1), ev(2)]


@pytest.mark.anyio
async def test_batched_driver_with_real_clock_and_encode_callback() -> None:
    source = Source()
    source.push(ev(1), ev(2), ev(3))
    policy = BatchPolicy(max_count=2, max_delay=0.01)
    seen = []
    with anyio.fail_after(5):
        gen = batched(source, policy, encode=lambda e: e.replace(comment=None))
        seen.append(await gen.__anext__())  # count bound: 1+2 batched
        seen.append(await gen.__anext__())  # delay bound on the real clock: 3 alone
        source.close()
        seen.extend([e async for e in gen])
    assert [e.event for e in seen] == [BATCH_EVENT, "tick"]
    assert seen[1] == ev(3)


@pytest.mark.anyio
async def test_batched_refuses_non_events() -> None:
    source = Source()
    source.items.append("oops")  # type: ignore[arg-type]
    with anyio.fail_after(5), pytest.raises(TypeError):
        await batched(source, None).__anext__()


def test_a_batched_event_arrives_as_it_would_alone() -> None:
    # CR and CRLF inside data, and an empty event type: a lone event's parser turns them into
    # LF and "message"; the batch kept the raw CR and the empty type.
    events = [
        ServerSentEvent("line1\r\nline2", id=1),
        ServerSentEvent("a\rb", id=2),
        ServerSentEvent("x", event="", id=3),
    ]
    alone = [(m.event, m.data, m.id) for m in parse(b"".join(e.encode() for e in events))]
    (batch,) = parse(batch_event(events).encode())
    assert [(m.event, m.data, m.id) for m in unbatch(batch)] == alone
    assert alone == [
        ("message", "line1\nline2", "1"),
        ("message", "a\nb", "2"),
        ("message", "x", "3"),
    ]
