"""The hub clients publish with an idempotency key and retry safely: the same request (body and
key) again after 502/503/504 or a network error, with bounded backoff; never after a 4xx.

Against the scripted loopback server (what was sent), scripted httpx transports (network errors),
and the real hub app behind a transport that loses the first answer (the retry stores nothing new).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from sse_testkit import Reply, ScriptServer, json_reply

from ssehub import ConfigurationError, ConnectionFailed, HubResponseError
from ssehub.backends.memory import MemoryBackend
from ssehub.client import AsyncHubClient, HubClient, Publication, PublishResult, PublishRetry
from ssehub.hub import create_app

pytestmark = pytest.mark.integration

FAST = PublishRetry(initial_delay=0.001, max_delay=0.01, jitter=0)
ONE = b'{"id": "e-1", "topics": ["t"], "subscribers": 0}'
UNKNOWN = b'{"error": "outcome_unknown", "outcome": "unknown", "detail": "no answer"}'
UNAVAILABLE = b'{"error": "unavailable", "detail": "down"}'


@pytest.fixture
def path(server: ScriptServer) -> str:
    return server.new_path()


def key_of(request: Any) -> bytes:
    value: bytes = request.headers[b"idempotency-key"]
    return value


def test_a_504_and_a_503_are_retried_with_the_same_key(server: ScriptServer, path: str) -> None:
    server.script(
        f"{path}/publish",
        json_reply(504, UNKNOWN),
        json_reply(503, UNAVAILABLE),
        json_reply(200, ONE),
    )
    retries: list[tuple[int, float, BaseException]] = []
    with HubClient(
        server.url(path), publish_retry=FAST, on_retry=lambda *a: retries.append(a)
    ) as hub:
        assert hub.publish("t", {"n": 1}) == PublishResult("e-1", ("t",), 0)
    requests = server.requests(f"{path}/publish")
    assert len(requests) == 3
    assert len({key_of(r) for r in requests}) == 1
    assert len(key_of(requests[0])) == 36  # a UUID
    assert {r.body for r in requests} == {b'{"topic": "t", "data": {"n": 1}}'}
    assert [(attempt, type(cause)) for attempt, _, cause in retries] == [
        (1, HubResponseError),
        (2, HubResponseError),
    ]
    first_cause = retries[0][2]
    assert isinstance(first_cause, HubResponseError)
    assert first_cause.error["outcome"] == "unknown"


def test_each_logical_publish_has_its_own_key(server: ScriptServer, path: str) -> None:
    server.script(
        f"{path}/publish", json_reply(200, ONE), json_reply(200, ONE), json_reply(200, ONE)
    )
    with HubClient(server.url(path), publish_retry=FAST) as hub:
        hub.publish("t", "same")
        hub.publish("t", "same")
        hub.publish("t", "same", idempotency_key="order-7")
    first, second, third = server.requests(f"{path}/publish")
    assert key_of(first) != key_of(second)
    assert key_of(third) == b"order-7"


def test_retries_are_bounded_and_the_last_answer_is_raised(server: ScriptServer, path: str) -> None:
    server.script(f"{path}/publish", *(json_reply(504, UNKNOWN) for _ in range(3)))
    with (
        HubClient(server.url(path), publish_retry=PublishRetry(attempts=3, initial_delay=0)) as hub,
        pytest.raises(HubResponseError) as info,
    ):
        hub.publish("t", "x")
    assert info.value.status_code == 504
    assert info.value.error["outcome"] == "unknown"
    assert len(server.requests(f"{path}/publish")) == 3


def test_a_4xx_is_final(server: ScriptServer, path: str) -> None:
    server.script(
        f"{path}/publish",
        json_reply(409, b'{"error": "idempotency_key_reused", "detail": "other event"}'),
    )
    with (
        HubClient(server.url(path), publish_retry=FAST) as hub,
        pytest.raises(HubResponseError) as info,
    ):
        hub.publish("t", "x", idempotency_key="k")
    assert info.value.status_code == 409
    assert len(server.requests(f"{path}/publish")) == 1


def test_retry_after_is_honoured(server: ScriptServer, path: str) -> None:
    busy = Reply(
        status=503,
        headers=[(b"content-type", b"application/json"), (b"retry-after", b"0.2")],
        steps=[UNAVAILABLE],
    )
    server.script(f"{path}/publish", busy, json_reply(200, ONE))
    delays: list[float] = []
    with HubClient(
        server.url(path), publish_retry=FAST, on_retry=lambda _, d, __: delays.append(d)
    ) as hub:
        hub.publish("t", "x")
    # Retry-After is a floor, capped by max_delay (0.01 here): the cap wins.
    assert delays == [0.01]
    with HubClient(
        server.url(path),
        publish_retry=PublishRetry(initial_delay=0.001, max_delay=1.0, jitter=0),
        on_retry=lambda _, d, __: delays.append(d),
    ) as hub:
        server.script(f"{path}/publish", busy, json_reply(200, ONE))
        hub.publish("t", "x")
    assert delays[1] == 0.2


def test_a_batch_is_retried_with_the_same_keys(server: ScriptServer, path: str) -> None:
    events = [{"id": i, "topics": [t], "subscribers": 0} for i, t in (("1", "a"), ("2", "b"))]
    answer = json.dumps({"events": events}).encode()
    server.script(f"{path}/publish", json_reply(502, b"{}"), json_reply(200, answer))
    with HubClient(server.url(path), publish_retry=FAST) as hub:
        results = hub.publish_many(
            [Publication("a", "x", idempotency_key="mine"), {"topic": "b", "data": "y"}]
        )
    assert [r.id for r in results] == ["1", "2"]
    first, second = server.requests(f"{path}/publish")
    assert first.body == second.body
    items = json.loads(first.body)
    assert items[0]["idempotency_key"] == "mine"
    assert len(items[1]["idempotency_key"]) == 36
    assert b"idempotency-key" not in first.headers  # a batch carries its keys in the body


def scripted(*steps: Exception | httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that raises or answers ``steps`` in order, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(steps)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handle), seen


def test_network_errors_are_retried_with_the_same_key() -> None:
    transport, seen = scripted(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("cut"),
        httpx.Response(200, content=ONE),
    )
    causes: list[BaseException] = []
    with (
        httpx.Client(transport=transport) as http,
        HubClient(
            "http://hub",
            client=http,
            publish_retry=FAST,
            on_retry=lambda _, __, c: causes.append(c),
        ) as hub,
    ):
        assert hub.publish("t", "x").id == "e-1"
    assert len({request.headers["idempotency-key"] for request in seen}) == 1
    assert len(seen) == 4
    assert all(isinstance(cause, ConnectionFailed) for cause in causes)


def test_when_retries_run_out_the_network_error_is_raised() -> None:
    transport, seen = scripted(*(httpx.ConnectError("refused") for _ in range(2)))
    with (
        httpx.Client(transport=transport) as http,
        HubClient(
            "http://hub", client=http, publish_retry=PublishRetry(attempts=2, initial_delay=0)
        ) as hub,
        pytest.raises(ConnectionFailed),
    ):
        hub.publish("t", "x")
    assert len(seen) == 2


def test_the_policy() -> None:
    policy = PublishRetry(initial_delay=0.5, max_delay=5.0, multiplier=2.0, jitter=0.5)
    assert [policy.delay(k, 0.0) for k in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(1, 0.999) == pytest.approx(0.5 * 1.4995)
    assert policy.delay(1, 0.0, retry_after=3.0) == 3.0
    assert policy.delay(1, 0.0, retry_after=60.0) == 5.0
    assert PublishRetry().attempts == 5
    for bad in ({"attempts": 0}, {"initial_delay": -1}, {"multiplier": 0.5}, {"attempts": True}):
        with pytest.raises(ConfigurationError):
            PublishRetry(**bad)


class LosesTheFirstAnswer(httpx.AsyncBaseTransport):
    """Forwards every request to the hub app, but answers the first with a proxy's 504: the
    hub published it, the client never learns (an answer lost on the way back)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.keys: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key", ""))
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if len(self.keys) == 1:
            return httpx.Response(504, content=b"<html>gateway timeout</html>")
        return response


@pytest.mark.anyio
async def test_a_lost_answer_is_retried_and_the_hub_stores_one_event() -> None:
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = LosesTheFirstAnswer(httpx.ASGITransport(app=app))
        with anyio.fail_after(10):
            async with (
                httpx.AsyncClient(transport=transport) as http,
                AsyncHubClient("http://hub", client=http, publish_retry=FAST) as hub,
            ):
                result = await hub.publish("orders", {"n": 7})
                status = await hub.status()
        backend = app.state.hub.broker.backend
        assert isinstance(backend, MemoryBackend)
        (event,) = backend._history.after(["orders"], (0,)) or []
        assert result.id == event.id
        assert status["topics"]["orders"]["history"] == 1
        assert len(set(transport.keys[:2])) == 1
