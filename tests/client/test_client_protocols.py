"""Typed decoding through ``ssehub.protocols`` when a protocol is given (sync and async).

A scripted server sends what a protocol-aware endpoint sends (handshake, typed events, a batch,
a ``protocol.error``), encoded by the protocol layer itself; the clients must negotiate with
headers, deliver :class:`TypedEvent` values, unbatch, resume with the right id, and stop for
good on a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from sse_testkit import RecordingClock, ScriptServer, sse

from ssehub import ConfigurationError, NegotiationError, SchemaValidationError, ServerSentEvent
from ssehub.client import AsyncEventSource, EventSource, HubClient, ReadyState, ReconnectPolicy
from ssehub.protocols import (
    ClientWants,
    EventProtocol,
    Negotiator,
    TypedEvent,
    batch_event,
    protocol_error_event,
)

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(initial_retry=0.001, max_delay=0.01)


@dataclass(frozen=True)
class Progress:
    task_id: str
    percent: float


TASKS = EventProtocol("tasks", versions=["1", "2"], features=["batching"])
PROGRESS = TASKS.kind("task.progress", Progress, batchable=True)
SESSION = Negotiator([TASKS]).negotiate(
    ClientWants(protocol="tasks", versions=("1", "2"), features=frozenset({"batching"}))
)
HANDSHAKE = SESSION.handshake_event().encode()


def progress(task: str, percent: float, ident: int) -> bytes:
    return SESSION.encode(PROGRESS, Progress(task, percent), id=ident).encode()


BATCH = batch_event(
    [SESSION.encode(PROGRESS, Progress("b", float(n)), id=n) for n in (11, 12, 13)]
).encode()


def typed(events: list[TypedEvent[Any]]) -> list[tuple[str, Any, str]]:
    return [(e.kind, e.payload, e.id) for e in events]


EXPECTED = [
    ("task.progress", Progress("a", 10.0), "10"),
    ("task.progress", Progress("b", 11.0), "11"),
    ("task.progress", Progress("b", 12.0), "12"),
    ("task.progress", Progress("b", 13.0), "13"),
    ("task.progress", Progress("a", 20.0), "14"),
]


def script_stream(server: ScriptServer, path: str) -> str:
    # First connection: handshake, one event, a batch of three, then the stream ends; the
    # reconnection gets the handshake again and one more event.
    return server.script(
        path,
        sse(HANDSHAKE, progress("a", 10.0, 10), BATCH),
        sse(HANDSHAKE, progress("a", 20.0, 14)),
    )


def check_requests(server: ScriptServer, path: str) -> None:
    first, second, _final = server.requests(path)
    assert first.headers[b"x-protocol"] == b"tasks"
    assert first.headers[b"x-protocol-version"] == b"1, 2"
    assert first.headers[b"x-client-features"] == b"batching"
    assert b"last-event-id" not in first.headers
    # The batch's id is its last item's: the reconnection resumes after the whole batch.
    assert second.headers[b"last-event-id"] == b"13"
    assert second.headers[b"x-protocol"] == b"tasks"


@pytest.mark.anyio
async def test_async_source_decodes_typed_events_and_unbatches(server: ScriptServer) -> None:
    path = server.new_path()
    url = script_stream(server, path)
    with anyio.fail_after(10):
        async with AsyncEventSource(
            url, protocol=TASKS, policy=FAST, clock=RecordingClock()
        ) as source:
            events = [event async for event in source]
    assert typed(events) == EXPECTED
    check_requests(server, path)


def test_sync_source_decodes_typed_events_and_unbatches(server: ScriptServer) -> None:
    path = server.new_path()
    url = script_stream(server, path)
    with EventSource(url, protocol=TASKS, policy=FAST) as source:
        events = list(source)
    assert typed(events) == EXPECTED
    check_requests(server, path)


def test_hub_client_subscribe_passes_the_protocol(server: ScriptServer) -> None:
    path = server.new_path()
    server.script(f"{path}/events", sse(HANDSHAKE, progress("a", 10.0, 10)))
    with HubClient(server.url(path)) as hub:
        source = hub.subscribe("t", protocol=TASKS, policy=FAST)
        with source:
            assert typed(list(source)) == [EXPECTED[0]]
    assert server.requests(f"{path}/events")[0].headers[b"x-protocol"] == b"tasks"


REFUSAL = protocol_error_event(NegotiationError("unknown protocol 'tasks'", {"chat": {}})).encode()


@pytest.mark.anyio
async def test_refusal_raises_and_closes_for_good(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(REFUSAL), sse(HANDSHAKE, progress("a", 1.0, 1)))
    with anyio.fail_after(10):
        async with AsyncEventSource(url, protocol=TASKS, policy=FAST) as source:
            with pytest.raises(NegotiationError) as info:
                await source.__anext__()
            assert info.value.available == {"chat": {}}
            assert source.ready_state is ReadyState.CLOSED
            assert [event async for event in source] == []
    assert len(server.requests(path)) == 1  # never asked again


def test_sync_refusal_raises_and_closes(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(REFUSAL), sse(HANDSHAKE))
    with EventSource(url, protocol=TASKS, policy=FAST) as source:
        with pytest.raises(NegotiationError):
            next(source)
        assert list(source) == []
    assert len(server.requests(path)) == 1


@pytest.mark.anyio
async def test_invalid_payload_raises_and_the_stream_goes_on(server: ScriptServer) -> None:
    bad = b'id: 2\nevent: task.progress\ndata: {"task_id": "a", "percent": true}\n\n'
    path = server.new_path()
    url = server.script(path, sse(HANDSHAKE, bad, progress("a", 3.0, 3)))
    with anyio.fail_after(10):
        async with AsyncEventSource(url, protocol=TASKS, policy=FAST) as source:
            with pytest.raises(SchemaValidationError):
                await source.__anext__()
            assert typed([e async for e in source]) == [("task.progress", Progress("a", 3.0), "3")]


MIXED_BATCH = batch_event(
    [
        SESSION.encode(PROGRESS, Progress("b", 1.0), id=21),
        ServerSentEvent('{"task_id": "b", "percent": true}', event="task.progress", id=22),
        SESSION.encode(PROGRESS, Progress("b", 3.0), id=23),
    ]
).encode()


@pytest.mark.anyio
async def test_an_invalid_batch_item_raises_alone(server: ScriptServer) -> None:
    # The stream's Last-Event-ID is past the batch once it is parsed: one invalid item used
    # to raise for the whole batch, and its valid items were lost for good.
    path = server.new_path()
    url = server.script(path, sse(HANDSHAKE, MIXED_BATCH))
    with anyio.fail_after(10):
        async with AsyncEventSource(url, protocol=TASKS, policy=FAST) as source:
            first = await source.__anext__()
            with pytest.raises(SchemaValidationError):
                await source.__anext__()
            last = await source.__anext__()
    assert typed([first, last]) == [
        ("task.progress", Progress("b", 1.0), "21"),
        ("task.progress", Progress("b", 3.0), "23"),
    ]


def test_an_invalid_batch_item_raises_alone_in_the_blocking_source(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(HANDSHAKE, MIXED_BATCH))
    with EventSource(url, protocol=TASKS, policy=FAST) as source:
        first = next(source)
        with pytest.raises(SchemaValidationError):
            next(source)
        last = next(source)
    assert [first.id, last.id] == ["21", "23"]


def test_protocol_excludes_decoder_and_its_headers() -> None:
    with pytest.raises(ConfigurationError, match="either decoder or protocol"):
        EventSource("http://127.0.0.1:1/", protocol=TASKS, decoder=str)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="set by the protocol"):
        EventSource("http://127.0.0.1:1/", protocol=TASKS, headers={"X-Protocol": "chat"})
    with HubClient("http://127.0.0.1:1") as hub, pytest.raises(ConfigurationError):
        hub.subscribe("t", protocol=TASKS, decoder=str)  # type: ignore[call-overload]
