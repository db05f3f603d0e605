"""Honest publish outcomes on a frozen Redis: each test runs its own redis-server and freezes it
with SIGSTOP (no answer, no reset: a network dropping packets), never the shared one.

- A publish sent on a pooled connection and not answered within ``socket_timeout`` may be stored
  (Redis still reads what its socket holds when it resumes): ``PublishOutcomeUnknown``, and the
  hub answers 504 with ``"outcome": "unknown"``, not 503.
- A publish that needs a new connection cannot even finish the connection's handshake: it is
  refused before it is sent (``BackendUnavailable``, 503), and is not stored after the resume.
- After SIGCONT, the retry of the unknown one with the same key stores nothing new and answers
  the id the first attempt got.

asyncio only: redis-py's client does not run on trio.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import redis
from redis_support import RedisServer

from ssehub import BackendUnavailable, PublishOutcomeUnknown
from ssehub.backends.redis import RedisBackend
from ssehub.broker import Broker, StoredEvent, Subscription
from ssehub.hub import create_app

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

TIMEOUT = 1.0  # the backend's socket_timeout: how long a frozen Redis is waited for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_broker(server: RedisServer) -> Broker:
    return Broker(RedisBackend(server.url, prefix="outcome", socket_timeout=TIMEOUT))


def stored(server: RedisServer, topic: str) -> list[str]:
    client = redis.Redis(
        host="127.0.0.1", port=server.port, socket_timeout=5, decode_responses=True
    )
    try:
        entries: Any = client.xrange(f"ssehub:{{outcome}}:t:{topic}")
    finally:
        client.close()
    return [fields.get("d", "") for _, fields in entries]


async def drain(subscription: Subscription, until: str) -> list[str]:
    seen: list[str] = []
    with anyio.fail_after(20):  # the reader's XREAD may wait out its own timeout once
        while until not in seen:
            for item in await subscription.receive():
                assert isinstance(item, StoredEvent), item
                assert item.event.data is not None
                seen.append(item.event.data)
    return seen


async def test_a_frozen_redis_makes_the_outcome_unknown_and_the_retry_safe(
    server: RedisServer,
) -> None:
    async with make_broker(server) as broker, broker.subscribe("t") as subscription:
        warm = await broker.publish("t", "warm")  # a pooled, connected command connection
        server.pause()
        with anyio.fail_after(TIMEOUT * 5), pytest.raises(PublishOutcomeUnknown):
            await broker.publish("t", "maybe", idempotency_key="k-maybe")
        # That connection was dropped; a new one cannot get through its handshake: refused
        # before the publish is written, so it is certainly not stored.
        with anyio.fail_after(TIMEOUT * 5), pytest.raises(BackendUnavailable) as refused:
            await broker.publish("t", "never", idempotency_key="k-never")
        assert not isinstance(refused.value, PublishOutcomeUnknown)
        server.resume()

        retried = await broker.publish("t", "maybe", idempotency_key="k-maybe")
        again = await broker.publish("t", "maybe", idempotency_key="k-maybe")
        assert again.id == retried.id
        assert retried.position > warm.position
        # Redis ran the frozen attempt when it resumed; the retry stored nothing new, and
        # "never" was never stored.
        assert stored(server, "t") == ["warm", "maybe"]
        await broker.publish("t", "end")
        assert await drain(subscription, "end") == ["warm", "maybe", "end"]


async def test_the_hub_answers_504_unknown_then_the_retry_returns_the_first_id(
    server: RedisServer,
) -> None:
    async with make_broker(server) as broker:
        app = create_app(broker=broker)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            body = {"topic": "t", "data": "maybe"}
            key = {"Idempotency-Key": "order-7"}
            assert (await client.post("/publish", json={"topic": "t", "data": "w"})).is_success
            server.pause()
            unknown = await client.post("/publish", json=body, headers=key)
            assert unknown.status_code == 504
            assert unknown.json()["error"] == "outcome_unknown"
            assert unknown.json()["outcome"] == "unknown"

            refused = await client.post(
                "/publish", json={"topic": "t", "data": "never"}, headers={"Idempotency-Key": "o8"}
            )
            assert refused.status_code == 503
            assert refused.json()["error"] == "unavailable"
            assert "outcome" not in refused.json()
            server.resume()

            first = await client.post("/publish", json=body, headers=key)
            second = await client.post("/publish", json=body, headers=key)
            assert first.status_code == second.status_code == 200
            assert first.json() == second.json()
            status = (await client.get("/status")).json()
            assert status["topics"]["t"]["history"] == 2
        assert stored(server, "t") == ["w", "maybe"]


async def test_a_refused_connection_answers_503_and_stores_nothing(server: RedisServer) -> None:
    async with make_broker(server) as broker:
        app = create_app(broker=broker)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            await anyio.to_thread.run_sync(lambda: server.stop(save=True))
            response = await client.post(
                "/publish", json={"topic": "t", "data": "x"}, headers={"Idempotency-Key": "k"}
            )
            assert response.status_code == 503
            assert response.json()["error"] == "unavailable"
            await anyio.to_thread.run_sync(server.start)
            assert stored(server, "t") == []
            ok = await client.post(
                "/publish", json={"topic": "t", "data": "x"}, headers={"Idempotency-Key": "k"}
            )
            assert ok.status_code == 200
        assert stored(server, "t") == ["x"]
