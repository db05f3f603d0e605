"""Batching: the pure policy on a manual clock, the async driver, and unbatching."""

from __future__ import annotations

import json
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
    size = len(ev(1).encode())
    policy = BatchPolicy(max_bytes=size * 2 + 1, clock=ManualClock())
    assert policy.add(ev(1)) == []
    assert policy.add(ev(2)) == []
    [batch] = policy.add(ev(3))  # 3 would overflow: 1 and 2 go out, 3 starts a new batch
    assert [m.id for m in unbatch(parse(batch.encode())[0])] == ["1", "2"]
    assert policy.pending == 1


def test_oversized_event_goes_alone_after_the_pending_batch() -> None:
    policy = BatchPolicy(max_bytes=40, clock=ManualClock())
    small = ServerSentEvent("1", event="tick", id=1)
    big = ServerSentEvent("x" * 100, event="tick", id=2)
    assert policy.add(small) == []
    assert policy.add(big) == [small, big]  # a batch of one is the plain event


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
