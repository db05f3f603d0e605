"""HubClient and AsyncHubClient against the scripted server: requests sent, answers and errors.

These pin the client's side of the hub API without depending on the hub itself; the CLI tests
run the same clients against the real hub.
"""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
from sse_testkit import Reply, ScriptServer, json_reply, refused_url, sse

from ssehub import ConfigurationError, ConnectionFailed, EventValidationError, HubResponseError
from ssehub.client import (
    DEFAULT_HUB_URL,
    AsyncHubClient,
    HubClient,
    Publication,
    PublishResult,
    PublishRetry,
    ReconnectPolicy,
)
from ssehub.client._hub import default_hub_url

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(initial_retry=0.001, max_delay=0.01)
ONCE = PublishRetry(attempts=1)  # retries are tested in test_client_publish_retry.py
ONE = b'{"id": "e-1", "topics": ["chat"], "subscribers": 2}'


def hub_base(server: ScriptServer) -> tuple[str, str]:
    """A fresh base URL (unique prefix per test) and its prefix."""
    prefix = server.new_path()
    return server.url(prefix), prefix


def test_publish_sends_the_documented_json(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/publish", json_reply(200, ONE), json_reply(200, ONE))
    with HubClient(base + "/", headers={"Authorization": "Bearer k"}) as hub:
        result = hub.publish("chat", "hello\nworld")
        assert result == PublishResult("e-1", ("chat",), 2)
        hub.publish(["a", "b"], {"n": 1}, event="tick", retry=500)
    first, second = server.requests(f"{prefix}/publish")
    assert first.method == "POST"
    assert first.headers[b"content-type"] == b"application/json"
    assert first.headers[b"authorization"] == b"Bearer k"
    assert json.loads(first.body) == {"topic": "chat", "data": "hello\nworld"}
    assert json.loads(second.body) == {
        "topics": ["a", "b"],
        "data": {"n": 1},
        "event": "tick",
        "retry": 500,
    }


ITEMS = (
    b'{"id": "1", "topics": ["a"], "subscribers": 0},'
    b' {"id": "2", "topics": ["b", "c"], "subscribers": 3}'
)


@pytest.mark.parametrize(
    "answer",
    [b'{"events": [' + ITEMS + b"]}", b"[" + ITEMS + b"]"],
    ids=["events-object", "bare-list"],
)
def test_publish_many_sends_one_array_and_reads_every_id(
    server: ScriptServer, answer: bytes
) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/publish", json_reply(200, answer))
    with HubClient(base) as hub:
        results = hub.publish_many(
            [Publication("a", "x"), {"topics": ["b", "c"], "data": 2, "event": "e"}]
        )
    assert results == [PublishResult("1", ("a",), 0), PublishResult("2", ("b", "c"), 3)]
    (request,) = server.requests(f"{prefix}/publish")
    sent = json.loads(request.body)
    keys = [item.pop("idempotency_key") for item in sent]  # one generated per event
    assert len(set(keys)) == 2
    assert sent == [
        {"topic": "a", "data": "x"},
        {"topics": ["b", "c"], "data": 2, "event": "e"},
    ]


def test_hub_errors_carry_the_json_error(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    error = b'{"error": "invalid_topic", "detail": "invalid topic: empty"}'
    server.script(
        f"{prefix}/publish",
        json_reply(400, error),
        Reply(status=502, headers=[(b"content-type", b"text/html")], steps=[b"<h1>Bad</h1>"]),
        json_reply(200, b"not json"),
        json_reply(200, b'{"unexpected": true}'),
    )
    with HubClient(base, publish_retry=ONCE) as hub:
        with pytest.raises(HubResponseError) as info:
            hub.publish("", "x")
        assert info.value.status_code == 400
        assert info.value.error == {"error": "invalid_topic", "detail": "invalid topic: empty"}
        with pytest.raises(HubResponseError) as info:
            hub.publish("t", "x")
        assert info.value.status_code == 502
        assert info.value.error == {"error": "http_502", "detail": "<h1>Bad</h1>"}
        with pytest.raises(HubResponseError, match="not JSON"):
            hub.publish("t", "x")
        with pytest.raises(HubResponseError, match="unexpected publish result"):
            hub.publish("t", "x")


def test_unreachable_hub_and_bad_input() -> None:
    sock, url = refused_url()
    with sock, HubClient(url.removesuffix("/events"), publish_retry=ONCE) as hub:
        with pytest.raises(ConnectionFailed, match="cannot reach the hub") as info:
            hub.status()
        assert isinstance(info.value.__cause__, httpx.ConnectError)
        with pytest.raises(ConnectionFailed):
            hub.publish("t", "x")
        with pytest.raises(EventValidationError):
            hub.publish("t", {1, 2})
        with pytest.raises(EventValidationError):
            hub.publish("t", float("nan"))
    with pytest.raises(ConfigurationError):
        HubClient("ftp://127.0.0.1/")


def test_status_returns_the_document(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    document = {"uptime": 1.5, "connections": 0, "topics": {}, "totals": {"published": 0}}
    server.script(
        f"{prefix}/status",
        json_reply(200, json.dumps(document).encode()),
        json_reply(200, b"[1, 2]"),
    )
    with HubClient(base) as hub:
        assert hub.status() == document
        with pytest.raises(HubResponseError, match="not an object"):
            hub.status()


def test_subscribe_builds_the_events_url_and_resumes(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/events", sse(b"id: 8\ndata: x\n\n"))
    with HubClient(base, headers={"Authorization": "Bearer k"}) as hub:
        with hub.subscribe(["a b", "c"], "7", idle_timeout=5, policy=FAST) as source:
            assert [(e.data, e.id) for e in source] == [("x", "8")]
        with pytest.raises(ValueError, match="at least one topic"):
            hub.subscribe([])
    (request,) = server.requests(f"{prefix}/events")[:1]
    assert request.query == b"topic=a+b&topic=c"
    assert request.headers[b"last-event-id"] == b"7"
    assert request.headers[b"authorization"] == b"Bearer k"


def test_subscribe_uses_a_given_http_client(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/events", sse(b"data: x\n\n"), sse(b"data: y\n\n"))
    with httpx.Client(headers={"X-Via": "mine"}) as http:
        with HubClient(base, client=http) as hub, hub.subscribe("t", policy=FAST) as source:
            assert [e.data for e in source] == ["x", "y"]
        assert not http.is_closed  # neither the hub client nor the source closed it
    # Without one, the source has its own client: it survives the hub client's close.
    with HubClient(base) as hub:
        source = hub.subscribe("t", policy=FAST)
    with source:
        assert list(source) == []  # the scripted 204: a clean end, not a closed-client error
    first, second, end, other = server.requests(f"{prefix}/events")
    assert first.headers[b"x-via"] == second.headers[b"x-via"] == end.headers[b"x-via"] == b"mine"
    assert b"x-via" not in other.headers


def test_default_hub_url_reads_the_environment() -> None:
    assert default_hub_url({}) == DEFAULT_HUB_URL == "http://127.0.0.1:8000"
    assert default_hub_url({"SSEHUB_URL": ""}) == DEFAULT_HUB_URL
    assert default_hub_url({"SSEHUB_URL": "http://hub:9"}) == "http://hub:9"


@pytest.mark.anyio
async def test_async_hub_client(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(
        f"{prefix}/publish",
        json_reply(200, ONE),
        json_reply(200, b'{"events": [{"id": "2", "topics": ["a"], "subscribers": 1}]}'),
        json_reply(413, b'{"error": "body_too_large", "detail": "too big"}'),
    )
    server.script(f"{prefix}/status", json_reply(200, b'{"connections": 4}'))
    server.script(f"{prefix}/events", sse(b"data: live\n\n"))
    with anyio.fail_after(10):
        async with AsyncHubClient(base) as hub:
            assert await hub.publish("chat", "hi") == PublishResult("e-1", ("chat",), 2)
            assert await hub.publish_many([Publication("a", "x")]) == [
                PublishResult("2", ("a",), 1)
            ]
            with pytest.raises(HubResponseError) as info:
                await hub.publish("a", "x" * 10)
            assert info.value.error["error"] == "body_too_large"
            assert await hub.status() == {"connections": 4}
            async with hub.subscribe(
                "chat", policy=FAST, decoder=lambda e: e.data.upper()
            ) as source:
                assert [value async for value in source] == ["LIVE"]


@pytest.mark.anyio
async def test_async_subscribe_uses_a_given_http_client(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/events", sse(b"data: x\n\n"))
    with anyio.fail_after(10):
        async with httpx.AsyncClient(headers={"X-Via": "mine"}) as http:
            async with (
                AsyncHubClient(base, client=http) as hub,
                hub.subscribe("t", policy=FAST) as source,
            ):
                assert [e.data async for e in source] == ["x"]
            assert not http.is_closed
    assert server.requests(f"{prefix}/events")[0].headers[b"x-via"] == b"mine"


@pytest.mark.anyio
async def test_async_hub_client_unreachable() -> None:
    sock, url = refused_url()
    with sock, anyio.fail_after(10):
        async with AsyncHubClient(url.removesuffix("/events"), publish_retry=ONCE) as hub:
            with pytest.raises(ConnectionFailed):
                await hub.publish("t", "x")
            with pytest.raises(ConnectionFailed):
                await hub.status()


def _redirect(status: int, location: str) -> Reply:
    return Reply(status=status, headers=[(b"location", location.encode())], steps=[b""])


def test_status_follows_a_redirect(server: ScriptServer) -> None:
    # A hub URL that redirects (http to https, a moved hub) answered "the hub refused:
    # no detail (http_308)".
    base, prefix = hub_base(server)
    moved = server.url(f"{prefix}/moved/status")
    server.script(f"{prefix}/status", _redirect(308, moved))
    server.script(f"{prefix}/moved/status", json_reply(200, b'{"uptime": 1.5}'))
    with HubClient(base) as hub:
        assert hub.status() == {"uptime": 1.5}


@pytest.mark.anyio
async def test_async_status_follows_a_redirect(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    moved = server.url(f"{prefix}/moved/status")
    server.script(f"{prefix}/status", _redirect(301, moved))
    server.script(f"{prefix}/moved/status", json_reply(200, b'{"uptime": 2.5}'))
    async with AsyncHubClient(base) as hub:
        assert await hub.status() == {"uptime": 2.5}


def test_a_redirected_publish_names_where_the_hub_is(server: ScriptServer) -> None:
    base, prefix = hub_base(server)
    server.script(f"{prefix}/publish", _redirect(308, "https://hub.example/publish"))
    with HubClient(base, publish_retry=ONCE) as hub, pytest.raises(HubResponseError) as raised:
        hub.publish("chat", "x")
    assert raised.value.status_code == 308
    assert "the hub redirected to https://hub.example/publish" in str(raised.value)
