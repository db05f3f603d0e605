"""The non-streaming HTTP API: publish, status, health, and every error answer."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.types import Message

from ssehub.broker import Broker
from ssehub.hub import ERROR_CODES, HubSettings, create_app
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for, hub_of, open_events, running_hub

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


async def test_publish_one_event(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=orders") as stream:
            await stream.start()
            response = await client.post(
                "/publish", json={"topic": "orders", "data": {"n": 1}, "event": "created"}
            )
            assert response.status_code == 200
            body = response.json()
            assert set(body) == {"id", "topics", "subscribers"}
            assert body["topics"] == ["orders"]
            assert body["subscribers"] == 1
            event = await stream.events().next_event()
            assert (event.id, event.event, event.data) == (body["id"], "created", '{"n":1}')


async def test_publish_batch_in_order(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a&topic=b") as stream:
            await stream.start()
            response = await client.post(
                "/publish",
                json=[
                    {"topic": "a", "data": "one"},
                    {"topics": ["a", "b"], "data": "two\nlines", "retry": 500},
                    {"topic": "c", "data": 3},
                ],
            )
            assert response.status_code == 200
            events = response.json()["events"]
            assert [e["topics"] for e in events] == [["a"], ["a", "b"], ["c"]]
            assert [e["subscribers"] for e in events] == [1, 1, 0]
            received = await stream.events().take(2)
            assert [(e.id, e.data) for e in received] == [
                (events[0]["id"], "one"),
                (events[1]["id"], "two\nlines"),
            ]
            assert stream.events().parser.retry == 500


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [
        ("POST", "/publish", JSON, b"{", 400, "invalid_json"),
        ("POST", "/publish", JSON, b"\xff", 400, "invalid_json"),
        ("POST", "/publish", JSON, b"42", 400, "invalid_body"),
        ("POST", "/publish", JSON, b"[]", 400, "empty_batch"),
        ("POST", "/publish", JSON, b'{"data": 1}', 400, "missing_topic"),
        ("POST", "/publish", JSON, b'{"topic": "a b", "data": 1}', 400, "invalid_topic"),
        ("POST", "/publish", JSON, b'{"topic": "t"}', 400, "missing_data"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": "a\\nb"}', 400,
         "invalid_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": "a\\u0000"}', 400,
         "invalid_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": "a\\rb"}', 400,
         "invalid_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": "a\\r\\nb"}', 400,
         "invalid_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": 5}', 400,
         "invalid_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "event": "ssehub.reset"}', 403,
         "reserved_event"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "retry": -1}', 400,
         "invalid_retry"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "retry": true}', 400,
         "invalid_retry"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": "\\ud800"}', 400, "invalid_data"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": NaN}', 400, "invalid_json"),
        ("POST", "/publish", JSON, b'{"topics": [], "data": 1}', 400, "missing_topic"),
        ("POST", "/publish", JSON, b'{"topics": [5], "data": 1}', 400, "invalid_topic"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": 1, "id": "1"}', 400,
         "unknown_field"),
        ("POST", "/publish", JSON,
         json.dumps({"topics": [f"t{i}" for i in range(33)], "data": 1}).encode(), 400,
         "too_many_topics"),
        ("POST", "/publish", JSON,
         json.dumps([{"topic": "t", "data": i} for i in range(1001)]).encode(), 413,
         "too_many_events"),
        ("POST", "/publish", JSON, b'{"topic": "t", "data": "' + b"x" * 1024 * 1024 + b'"}',
         413, "body_too_large"),
        ("POST", "/publish", {"content-type": "text/plain"}, b'{"topic": "t", "data": 1}', 415,
         "unsupported_media_type"),
        ("POST", "/publish", {}, b'{"topic": "t", "data": 1}', 415, "unsupported_media_type"),
        ("POST", "/publish", {**JSON, "content-length": "abc"}, b"", 400, "invalid_body"),
        ("GET", "/events", {}, b"", 400, "missing_topic"),
        ("GET", "/events?topic=", {}, b"", 400, "invalid_topic"),
        ("GET", "/events?topic=a%20b", {}, b"", 400, "invalid_topic"),
        ("GET", "/events?topic=%C3%A9", {}, b"", 400, "invalid_topic"),
        ("GET", "/events?" + "&".join(f"topic=t{i}" for i in range(33)), {}, b"", 400,
         "too_many_topics"),
        ("GET", "/publish", {}, b"", 405, "method_not_allowed"),
        ("DELETE", "/publish", {}, b"", 405, "method_not_allowed"),
        ("POST", "/events?topic=a", JSON, b"{}", 405, "method_not_allowed"),
        ("PUT", "/status", {}, b"", 405, "method_not_allowed"),
        ("POST", "/health", {}, b"", 405, "method_not_allowed"),
        ("GET", "/nope", {}, b"", 404, "not_found"),
        ("GET", "/events/extra", {}, b"", 404, "not_found"),
    ],
)  # fmt: skip
async def test_errors_are_json(
    hub_app: Starlette,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == status == ERROR_CODES[code]
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {"error", "detail"}
    assert document["error"] == code
    assert isinstance(document["detail"], str)
    assert document["detail"]
    if status == 405:
        assert response.headers["allow"]
    # Nothing was published, and no subscription was left behind.
    stats = hub_of(hub_app).broker.statistics()
    assert (stats.published, stats.subscribers) == (0, 0)


async def test_rejected_batch_publishes_nothing(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=t") as stream:
            await stream.start()
            response = await client.post(
                "/publish",
                json=[{"topic": "t", "data": "fine"}, {"topic": "t", "data": 1, "event": "a\rb"}],
            )
            assert response.status_code == 400
            assert response.json()["detail"].startswith("events[1]: ")
            # A marker published afterwards is the first thing the subscriber sees.
            marker = (await client.post("/publish", json={"topic": "t", "data": "marker"})).json()
            event = await stream.events().next_event()
            assert (event.id, event.data) == (marker["id"], "marker")
    status = (await client.get("/status")).json()
    assert status["totals"]["published"] == 1
    assert status["topics"]["t"]["history"] == 1


async def _call(app: Starlette, scope: dict[str, Any], chunks: list[bytes]) -> tuple[int, Any, int]:
    """Call the app directly; return (status, JSON body, how many body chunks it read)."""
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        if reads < len(chunks):
            reads += 1
            return {
                "type": "http.request",
                "body": chunks[reads - 1],
                "more_body": reads < len(chunks),
            }
        raise AssertionError("the app read past the end of the body")

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(5):
        await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), reads


def _post_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/publish",
        "raw_path": b"/publish",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async with running_hub(HubSettings(max_body_size=100)) as app:
        scope = _post_scope([(b"content-length", b"10000000000")])
        status, body, reads = await _call(app, scope, [b"x" * 100] * 3)
        assert (status, body["error"], reads) == (413, "body_too_large", 0)


async def test_streamed_body_is_cut_off_at_the_limit() -> None:
    # A chunked body (no Content-Length) is counted while it streams in: the app stops
    # reading as soon as the count passes the limit, whatever the client would still send.
    async with running_hub(HubSettings(max_body_size=100)) as app:
        status, body, reads = await _call(app, _post_scope([]), [b"x" * 60] * 1000)
        assert (status, body["error"], reads) == (413, "body_too_large", 2)


async def test_body_at_the_limit_is_accepted() -> None:
    payload = json.dumps({"topic": "t", "data": "x"}).encode()
    async with running_hub(HubSettings(max_body_size=len(payload))) as app:
        status, body, _ = await _call(app, _post_scope([]), [payload[:5], payload[5:]])
        assert status == 200
        assert body["topics"] == ["t"]


async def test_status_document(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a&topic=b") as stream:
            await stream.start()
            await client.post("/publish", json={"topic": "a", "data": 1})
            await client.post("/publish", json={"topic": "z", "data": 1})
            await stream.events().next_event()
            response = await client.get("/status")
    assert response.status_code == 200
    status = response.json()
    assert set(status) == {"uptime", "connections", "topics", "totals"}
    assert status["uptime"] >= 0
    assert status["connections"] == 1
    # Without authentication everyone sees every topic, and so the bytes of its history.
    history_bytes = {name: topic.pop("history_bytes") for name, topic in status["topics"].items()}
    assert history_bytes["b"] == 0 < history_bytes["a"] == history_bytes["z"]
    assert status["totals"]["history_bytes"] == history_bytes["a"] + history_bytes["z"]
    assert status["topics"] == {
        "a": {"subscribers": 1, "history": 1},
        "b": {"subscribers": 1, "history": 0},
        "z": {"subscribers": 0, "history": 1},
    }
    assert {"published", "delivered", "dropped", "shed"} <= set(status["totals"])
    assert status["totals"]["published"] == 2
    assert status["totals"]["delivered"] == 1


async def test_health_ok_then_draining(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    hub_of(hub_app).drain()
    response = await client.get("/health")
    assert (response.status_code, response.json()) == (503, {"status": "draining"})


async def test_without_a_running_broker_the_hub_answers_503() -> None:
    # Mounted without its lifespan and without an entered broker: a clear 503, never a 500.
    app = create_app()
    async with client_for(app) as client:
        response = await client.post("/publish", json={"topic": "t", "data": 1})
        assert (response.status_code, response.json()["error"]) == (503, "unavailable")
        response = await client.get("/events?topic=t")
        assert (response.status_code, response.json()["error"]) == (503, "unavailable")
        response = await client.get("/status")
        assert response.status_code == 503
        response = await client.get("/health")
        assert (response.status_code, response.json()) == (503, {"status": "unavailable"})


async def test_lifespan_owns_the_broker() -> None:
    app = create_app()
    broker = hub_of(app).broker
    assert hub_of(app).owns_broker
    assert not broker.running
    async with app.router.lifespan_context(app):
        assert broker.running
    assert not broker.running


async def test_settings_reach_the_broker() -> None:
    settings = HubSettings(
        history=7, queue_size=9, slow_policy="drop_oldest", max_connection_age=60, max_topics=3
    )
    broker = hub_of(create_app(settings)).broker
    assert broker.queue_size == 9
    assert broker.overflow.value == "drop_oldest"
    assert broker.max_connection_age == 60
    assert broker.max_topics == 3


async def test_user_broker_limits_are_respected() -> None:
    async with Broker(max_topics_per_subscription=2) as broker:
        app = create_app(broker=broker)
        assert not hub_of(app).owns_broker
        async with client_for(app) as client:
            response = await client.post("/publish", json={"topics": ["a", "b", "c"], "data": 1})
            assert response.json()["error"] == "too_many_topics"
            response = await client.get("/events?topic=a&topic=b&topic=c")
            assert response.json()["error"] == "too_many_topics"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=10,
)
fields = st.sampled_from(["topic", "topics", "data", "event", "retry", "id"])
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(fields, json_values | st.text(max_size=5)).map(
        lambda v: json.dumps(v).encode()
    ),
    st.lists(st.dictionaries(fields, json_values), max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/ld+json", ""]),
    query=st.text(max_size=40),
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
    path=st.sampled_from(["/publish", "/events", "/status", "/health", "/docs", "/x"]),
)
async def test_no_input_causes_a_server_error(
    client: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    query: str,
    method: str,
    path: str,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if path == "/events" and method == "GET":
        # A valid subscription streams forever; the stream itself is tested elsewhere.
        query = query.replace("topic", "tpc")
    params = {"x": query} if path == "/events" else {"q": query, "topic": query}
    with anyio.fail_after(5):
        response = await client.request(method, path, params=params, headers=headers, content=body)
    assert response.status_code < 500
    if response.status_code >= 400 and method != "HEAD":
        assert set(response.json()) == {"error", "detail"}


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
async def test_random_publish_bodies_never_cause_a_server_error(
    client: httpx.AsyncClient, body: bytes
) -> None:
    with anyio.fail_after(5):
        response = await client.post("/publish", headers=JSON, content=body)
    assert response.status_code in (200, 400, 413)
    document = response.json()
    if response.status_code == 200:
        assert "id" in document or "events" in document
    else:
        assert document["error"] in ERROR_CODES


async def test_the_lifespan_shutdown_ends_when_open_streams_have_ended() -> None:
    # Some servers (granian) stop running the event loop once the lifespan's shutdown is done:
    # a stream still sending its end then would never finish.
    app = create_app(HubSettings())
    started, stop, stopped = anyio.Event(), anyio.Event(), anyio.Event()

    async def lifespan() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lifespan)
        await started.wait()
        async with stream_asgi(app, scope=http_scope("/events?topic=news")) as stream:
            with anyio.fail_after(5):
                await stream.start()
                await stream.receive_chunk()
                stop.set()
                await stopped.wait()
            assert not hub_of(app)._streams  # ended before the lifespan's shutdown completed
            with anyio.fail_after(5):
                await stream.read_all()
            assert stream.complete  # a clean end of body
