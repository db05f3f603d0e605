"""``POST /publish`` with an ``Idempotency-Key`` (one event) or an ``idempotency_key`` per event
(a batch, the socket ingest): a retry within the history window answers the first result and
stores nothing new; bad keys are 400s with a JSON reason; a key reused for another event is 409;
a backend that may have stored the event without answering is 504 ``"outcome": "unknown"``,
never 503. On asyncio and trio, through the ASGI app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ssehub import PublishOutcomeUnknown
from ssehub.backends.memory import MemoryBackend
from ssehub.broker import Broker, StoredEvent
from ssehub.channels._ingest import IngestHandler

from .conftest import client_for, hub_of, running_hub

pytestmark = pytest.mark.anyio


def history(app: Starlette, topic: str) -> int:
    backend = hub_of(app).broker.backend
    assert isinstance(backend, MemoryBackend)
    return backend._history.size(topic)


async def test_the_same_key_twice_stores_one_event_and_both_answers_carry_its_id(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    body = {"topic": "orders", "event": "created", "data": {"n": 7}}
    key = {"Idempotency-Key": "order-7-created"}
    first = await client.post("/publish", json=body, headers=key)
    again = await client.post("/publish", json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert history(hub_app, "orders") == 1
    status = (await client.get("/status")).json()
    assert status["topics"]["orders"]["history"] == 1
    # Without the key, the same body is a new event.
    other = await client.post("/publish", json=body)
    assert other.json()["id"] != first.json()["id"]
    assert history(hub_app, "orders") == 2


async def test_the_field_works_like_the_header_for_one_event(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    body = {"topic": "t", "data": "x", "idempotency_key": "k"}
    first = await client.post("/publish", json=body)
    by_header = await client.post(
        "/publish", json={"topic": "t", "data": "x"}, headers={"Idempotency-Key": "k"}
    )
    both = await client.post("/publish", json=body, headers={"Idempotency-Key": "k"})
    assert first.json()["id"] == by_header.json()["id"] == both.json()["id"]
    assert history(hub_app, "t") == 1


async def test_a_batch_with_a_key_per_item(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    batch = [
        {"topic": "t", "data": "one", "idempotency_key": "b-1"},
        {"topics": ["t", "u"], "data": "two", "idempotency_key": "b-2"},
        {"topic": "t", "data": "plain"},
    ]
    first = await client.post("/publish", json=batch)
    again = await client.post("/publish", json=batch)
    assert first.status_code == again.status_code == 200
    ids = [event["id"] for event in first.json()["events"]]
    retried = [event["id"] for event in again.json()["events"]]
    assert retried[:2] == ids[:2]
    assert retried[2] != ids[2]  # no key: a new event
    assert (history(hub_app, "t"), history(hub_app, "u")) == (4, 1)


async def test_the_header_keys_a_batch_and_an_event_s_own_key_wins(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    batch = [
        {"topic": "t", "data": "a"},
        {"topic": "t", "data": "b", "idempotency_key": "own"},
        {"topic": "t", "data": "c"},
    ]
    header = {"Idempotency-Key": "batch-9"}
    first = (await client.post("/publish", json=batch, headers=header)).json()["events"]
    again = (await client.post("/publish", json=batch, headers=header)).json()["events"]
    assert [e["id"] for e in again] == [e["id"] for e in first]
    assert history(hub_app, "t") == 3
    # The event with its own key kept it.
    own = {"topic": "t", "data": "b"}
    by_own = await client.post("/publish", json=own, headers={"Idempotency-Key": "own"})
    assert by_own.json()["id"] == first[1]["id"]
    # Event i of the batch is keyed from the header apart from any key a client names: an
    # event that names "batch-9:2" itself is another publication (found in review).
    single = {"topic": "t", "data": "c", "idempotency_key": "batch-9:2"}
    assert (await client.post("/publish", json=single)).json()["id"] != first[2]["id"]
    assert history(hub_app, "t") == 4
    # A single event's own key wins over the header.
    body = {"topic": "t", "data": "b", "idempotency_key": "own"}
    wins = await client.post("/publish", json=body, headers={"Idempotency-Key": "other"})
    assert wins.json()["id"] == first[1]["id"]
    assert history(hub_app, "t") == 4
    # A header as long as allowed still keys a batch (its digest stands for it).
    long = {"Idempotency-Key": "k" * 255}
    one = (await client.post("/publish", json=batch[:1], headers=long)).json()["events"]
    two = (await client.post("/publish", json=batch[:1], headers=long)).json()["events"]
    assert one == two
    assert history(hub_app, "t") == 5


async def test_a_key_reused_for_another_event_is_409(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    key = {"Idempotency-Key": "k"}
    await client.post("/publish", json={"topic": "t", "data": "x"}, headers=key)
    for body in (
        {"topic": "t", "data": "y"},
        {"topic": "other", "data": "x"},
        {"topic": "t", "data": "x", "event": "e"},
    ):
        response = await client.post("/publish", json=body, headers=key)
        assert response.status_code == 409
        assert response.json()["error"] == "idempotency_key_reused"
    batch = [
        {"topic": "t", "data": "new", "idempotency_key": "fresh"},
        {"topic": "t", "data": "z", "idempotency_key": "k"},
    ]
    response = await client.post("/publish", json=batch)
    assert response.status_code == 409
    assert history(hub_app, "t") == 1  # nothing of the batch either


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("idempotency-key", "x" * 256)], {"topic": "t", "data": 1}),
        ([("idempotency-key", "has space")], {"topic": "t", "data": 1}),
        ([("idempotency-key", "")], {"topic": "t", "data": 1}),
        ([("idempotency-key", "caf\xe9")], {"topic": "t", "data": 1}),
        ([("idempotency-key", "a"), ("idempotency-key", "b")], {"topic": "t", "data": 1}),
        ([], {"topic": "t", "data": 1, "idempotency_key": "tab\there"}),
        ([], {"topic": "t", "data": 1, "idempotency_key": ""}),
        ([], {"topic": "t", "data": 1, "idempotency_key": 7}),
        ([], [{"topic": "t", "data": 1}, {"topic": "t", "data": 1, "idempotency_key": "x" * 300}]),
    ],
    ids=[
        "too-long",
        "space",
        "empty",
        "latin-1",
        "repeated-header",
        "field-tab",
        "field-empty",
        "field-not-a-string",
        "batch-item-too-long",
    ],
)
async def test_bad_keys_are_400_with_a_reason(
    hub_app: Starlette, headers: list[tuple[str, str]], body: Any
) -> None:
    raw = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    raw.append((b"content-type", b"application/json"))
    async with client_for(hub_app) as client:
        response = await client.post("/publish", json=body, headers=raw)
    assert response.status_code == 400, response.text
    document = response.json()
    assert document["error"] == "invalid_idempotency_key"
    assert document["detail"]
    assert history(hub_app, "t") == 0


class _Unanswered:
    """A backend whose publishes are sent but never answered (what a frozen Redis does)."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(
        self, batch: Sequence[Any], *, idempotency_keys: Sequence[str | None] | None = None
    ) -> list[StoredEvent]:
        self.calls += 1
        stored = await self.inner.publish(batch, idempotency_keys=idempotency_keys)
        if self.calls == 1:  # stored, but the answer is lost
            raise PublishOutcomeUnknown("no answer from the backend (test)")
        return stored


async def test_an_unanswered_publish_is_504_unknown_and_the_retry_is_safe() -> None:
    inner = MemoryBackend()
    backend = _Unanswered(inner)
    async with Broker(backend) as broker, running_hub(broker=broker) as app:
        async with client_for(app) as client:
            body = {"topic": "t", "data": "x"}
            key = {"Idempotency-Key": "k"}
            unknown = await client.post("/publish", json=body, headers=key)
            assert unknown.status_code == 504
            document = unknown.json()
            assert (document["error"], document["outcome"]) == ("outcome_unknown", "unknown")
            assert unknown.headers["cache-control"] == "no-store"
            retried = await client.post("/publish", json=body, headers=key)
            assert retried.status_code == 200
        assert inner._history.size("t") == 1
        (event,) = inner._history.after(["t"], (0,)) or []
        assert retried.json()["id"] == event.id


async def test_a_broker_that_is_not_running_is_503_and_stores_nothing() -> None:
    broker = Broker()
    app_cm = running_hub(broker=broker)
    async with app_cm as app, client_for(app) as client:
        response = await client.post(
            "/publish", json={"topic": "t", "data": "x"}, headers={"Idempotency-Key": "k"}
        )
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "outcome" not in response.json()


async def test_the_socket_ingest_takes_a_key_per_command(hub_app: Starlette) -> None:
    broker = hub_of(hub_app).broker
    handler = IngestHandler(broker, None, max_topics=8)
    line = b'{"command": "publish", "topic": "t", "data": "x", "idempotency_key": "i-1"}'
    first = await handler.execute(line)
    again = await handler.execute(line)
    assert first["ok"]
    assert again == first
    assert history(hub_app, "t") == 1
    reused = await handler.execute(
        b'{"command": "publish", "topic": "t", "data": "y", "idempotency_key": "i-1"}'
    )
    assert reused["error"] == "idempotency_key_reused"
    bad = await handler.execute(
        b'{"command": "publish", "topic": "t", "data": "y", "idempotency_key": "a b"}'
    )
    assert bad["error"] == "invalid_idempotency_key"
    assert history(hub_app, "t") == 1


async def test_the_socket_ingest_reports_an_unknown_outcome() -> None:
    backend = _Unanswered(MemoryBackend())
    async with Broker(backend) as broker:
        handler = IngestHandler(broker, None, max_topics=8)
        line = b'{"command": "publish", "topic": "t", "data": "x", "idempotency_key": "i"}'
        reply = await handler.execute(line)
        assert (reply["ok"], reply["error"], reply["outcome"]) == (
            False,
            "outcome_unknown",
            "unknown",
        )
        retried = await handler.execute(line)
        assert retried["ok"]
        assert backend.inner._history.size("t") == 1
