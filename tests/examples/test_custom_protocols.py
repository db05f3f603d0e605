"""examples/custom_protocols.py: protocol chosen per request, negotiation, batching."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from ssehub import NegotiationError
from ssehub.protocols import (
    BATCH_EVENT,
    HEALTH_PROTOCOL,
    TASK_PROTOCOL,
    BatchPolicy,
    HealthReport,
    ProtocolClient,
    TaskProgress,
    TypedEvent,
)
from ssehub.testing import ManualClock, http_scope, stream_asgi

pytestmark = pytest.mark.anyio


def make_app(example: Any) -> Any:
    # Fast simulation so the test sees many updates quickly; the test itself never sleeps.
    return example("custom_protocols").create_app(tick=0.001, health_interval=0.01)


async def test_tasks_with_batching_via_headers(example: Any, run_lifespan: Any) -> None:
    app = make_app(example)
    client = ProtocolClient(TASK_PROTOCOL)  # asks for batching
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            scope = http_scope("/events", headers=client.request_headers(), state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                await stream.start()
                assert stream.status_code == 200
                collector = stream.events()
                handshake = await collector.next_event()
                assert client.feed(handshake) == []
                assert client.handshake is not None
                assert client.handshake.features == {"batching"}
                assert client.handshake.kinds == ("task.progress",)
                typed = []
                saw_batch = False
                while not saw_batch or len(typed) < 20:
                    message = await collector.next_event()
                    saw_batch = saw_batch or message.event == BATCH_EVENT
                    typed.extend(client.feed(message))
    assert all(isinstance(t.payload, TaskProgress) for t in typed)
    ids = [int(t.id) for t in typed]
    assert ids == sorted(set(ids))  # order and ids preserved through batching
    assert client.last_event_id == typed[-1].id


async def test_tasks_without_batching_come_one_by_one(example: Any, run_lifespan: Any) -> None:
    app = make_app(example)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            scope = http_scope("/events", query_string="protocol=tasks", state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                events = await stream.events().take(40)
    assert events[0].event == "protocol.handshake"
    assert json.loads(events[0].data)["features"] == []
    assert {e.event for e in events[1:]} == {"task.progress"}
    # The first states are the snapshot of current tasks (a late subscriber starts there).
    assert TASK_PROTOCOL.decode(events[1]).payload.task_id.startswith("job-")


async def test_health_protocol_chosen_by_query(example: Any, run_lifespan: Any) -> None:
    app = make_app(example)
    client = ProtocolClient(HEALTH_PROTOCOL)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            query = "&".join(f"{k}={v}" for k, v in client.wants.query_params().items())
            scope = http_scope("/events", query_string=query, state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                collector = stream.events()
                typed: list[Any] = []
                while not any(t.kind == "health.alert" for t in typed):
                    typed.extend(client.feed(await collector.next_event()))
    assert client.handshake is not None
    assert client.handshake.protocol == "health"
    assert isinstance(typed[0].payload, HealthReport)  # the current report comes first
    kinds = {t.kind for t in typed}
    assert kinds == {"health.report", "health.alert"}


async def test_unknown_protocol_406_for_api_clients(example: Any, run_lifespan: Any) -> None:
    app = make_app(example)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            headers = {"x-protocol": "tasks", "x-protocol-version": "7"}
            scope = http_scope("/events", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as response:
                await response.start()
                assert response.status_code == 406
                body = json.loads(await response.read_all())
    assert body["error"] == "negotiation_failed"
    assert [p["name"] for p in body["available"]["protocols"]] == ["tasks", "health"]


async def test_unknown_protocol_browser_mode(example: Any, run_lifespan: Any) -> None:
    app = make_app(example)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            scope = http_scope("/events", query_string="protocol=chat", state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                await stream.start()
                assert stream.status_code == 200
                events = await stream.events().rest()
                assert stream.events().parser.retry == 60_000
    [error] = events
    assert error.event == "protocol.error"
    with pytest.raises(NegotiationError, match="unknown protocol"):
        ProtocolClient(TASK_PROTOCOL).feed(error)


def known_sequence_app(example: Any) -> Any:
    """The example without simulated jobs, batching by count only: batches of 4.

    The policy's manual clock is never advanced, so no batch is cut by the delay bound: which
    items share a batch depends on the count alone, not on the machine's speed.
    """
    return example("custom_protocols").create_app(
        simulate=False,
        make_policy=lambda kinds: BatchPolicy(max_count=4, kinds=kinds, clock=ManualClock()),
    )


async def test_reconnect_mid_batch_ends_with_the_exact_sequence(
    example: Any, run_lifespan: Any
) -> None:
    app = known_sequence_app(example)
    handled: list[TypedEvent[Any]] = []
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            for n in range(1, 11):  # ten tasks, one state each: ids 1..10, nothing conflated
                state["board"].create(f"task-{n}")
            client = ProtocolClient(TASK_PROTOCOL)  # asks for batching
            scope = http_scope("/events", headers=client.request_headers(), state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                collector = stream.events()
                assert client.feed(await collector.next_event()) == []  # the handshake
                batch = await collector.next_event()
                assert (batch.event, batch.id) == (BATCH_EVENT, "4")
                items = client.feed(batch)
                assert [t.id for t in items] == ["1", "2", "3", "4"]
                # The application handles two items of the batch, then the connection drops.
                handled.extend(items[:2])
            resumed = ProtocolClient(TASK_PROTOCOL, last_event_id=handled[-1].id)
            headers = resumed.request_headers()
            assert headers["Last-Event-ID"] == "2"  # the item's id, not the batch's ("4")
            scope = http_scope("/events", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                collector = stream.events()
                assert resumed.feed(await collector.next_event()) == []  # the handshake again
                batches = [await collector.next_event() for _ in range(2)]
                for message in batches:
                    handled.extend(resumed.feed(message))
    assert [(b.event, b.id) for b in batches] == [(BATCH_EVENT, "6"), (BATCH_EVENT, "10")]
    # Items 3 and 4 came again (the client never handled them), 1 and 2 did not.
    assert [int(t.id) for t in handled] == list(range(1, 11))
    assert [t.payload.task_id for t in handled] == [f"task-{n}" for n in range(1, 11)]
    assert resumed.last_event_id == "10"


@pytest.mark.parametrize("last_event_id", ["\u00b2", "abc", "99", "1" * 19])
async def test_an_unusable_last_event_id_starts_from_the_current_states(
    example: Any, run_lifespan: Any, last_event_id: str
) -> None:
    # A malformed id, or one this board never sent (from before a restart): the current states,
    # not a 400 (which would stop a browser for good) and not an empty stream.
    app = known_sequence_app(example)
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            for n in range(1, 5):
                state["board"].create(f"task-{n}")
            headers = {"x-protocol": "tasks", "last-event-id": last_event_id}
            scope = http_scope("/events", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                events = await stream.events().take(5)
                assert stream.status_code == 200
    assert [e.id for e in events[1:]] == ["1", "2", "3", "4"]
