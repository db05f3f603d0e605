"""``RedisBackend.ping``: a health check within a timeout, on a redis-server of the test's own.

The server is frozen with SIGSTOP (it neither answers nor resets connections, as when the
network drops packets): only on the private server this test starts, never the shared one.
asyncio only: redis-py's client does not run on trio.
"""

from __future__ import annotations

import time

import anyio
import pytest
import redis
from redis_support import RedisServer

from ssehub.backends.redis import RedisBackend
from ssehub.broker import Broker

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ping_calls(server: RedisServer) -> int:
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_ping_answers_and_a_frozen_redis_is_false_within_the_timeout(
    server: RedisServer,
) -> None:
    backend = RedisBackend(server.url, prefix="ping", socket_timeout=5)
    assert not await backend.ping(1.0)  # not started: nothing to ask
    async with Broker(backend):
        assert await backend.ping(1.0)
        assert backend.healthy
        server.pause()
        try:
            started = time.monotonic()
            with anyio.fail_after(5):
                assert not await backend.ping(0.5)
            assert time.monotonic() - started < 2  # the timeout, not the 5 s command timeout
            assert not backend.healthy  # the answer is also what ``healthy`` reports
        finally:
            server.resume()
        with anyio.fail_after(5):
            assert await backend.ping(1.0)  # a fresh connection: no stale reply read as this one
        assert backend.healthy
    assert not await backend.ping(1.0)  # closed: its connection is gone too


async def test_pings_use_one_connection_of_their_own(server: RedisServer) -> None:
    backend = RedisBackend(server.url, prefix="ping-conn", max_connections=1)
    async with Broker(backend):
        before = ping_calls(server)
        for _ in range(5):
            assert await backend.ping(1.0)
        assert ping_calls(server) - before == 5
        client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        try:
            names = [c["name"] for c in client.client_list()]
        finally:
            client.close()
        # The command pool's one connection, the reader's, and the health check's.
        assert names.count("ssehub:ping-conn") == 3
