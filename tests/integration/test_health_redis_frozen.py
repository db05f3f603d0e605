"""``/health`` tells the truth about a frozen Redis: a real ``ssehub serve`` on a Redis of its own.

The test starts its own ``redis-server`` on a free loopback port and freezes it with SIGSTOP
(no answer, no reset, as when the network drops packets); the shared Redis on 6379 is never
touched. The hub must report "degraded" within 5 s (the design bound is about 2 s: a 1 s
``PING`` timeout after at most 1 s of cached answer), say it is not ready, stay alive, and
recover once the server is resumed. A storm of probes costs one ``PING`` per second, counted by
Redis itself (``INFO commandstats``).

Probes are sent back to back, as an impatient load balancer would: the answers change with
time by design (the cached answer expires), so each one is an observation, not a sleep.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ssehub.hub._status import HEALTH_CHECK_CACHE

from .server_kit import ServerProcess, free_port

sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))
from redis_support import RedisServer, running_redis_server

pytestmark = [pytest.mark.integration, pytest.mark.redis]

TIMEOUT = 30.0  # spawning and importing a hub takes seconds on a loaded 2-core machine


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path) as server:
        yield server


def _redis(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)


def _ping_calls(server: RedisServer) -> int:
    client = _redis(server)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def _probe_until(http: httpx.Client, path: str, status: str, within: float) -> float:
    """Probe ``path`` back to back until it answers ``status``; return the seconds it took."""
    started = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - started < within:
        answer = http.get(path).json()["status"]
        if answer == status:
            return time.monotonic() - started
        seen.append(answer)
    raise AssertionError(f"{path} did not say {status!r} within {within} s: {seen[-3:]}")


def test_health_reports_a_frozen_redis_within_seconds_and_recovers(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)]
    hub = ServerProcess([*command, "--broker", redis_server.url, "--grace-period", "2"], port)
    try:
        hub.wait_listening(timeout=TIMEOUT)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            _probe_until(http, "/readyz", "ready", TIMEOUT)
            assert http.get("/health").json() == {"status": "ok"}

            # A probe storm over 2.5 cache periods: one PING per period, whatever the number
            # of probes (hundreds).
            client = _redis(redis_server)
            client.config_resetstat()
            client.close()
            started = time.monotonic()
            probes = 0
            while time.monotonic() - started < 2.5 * HEALTH_CHECK_CACHE:
                response = http.get("/health" if probes % 2 else "/readyz")
                assert response.status_code == 200, response.text
                probes += 1
            periods = math.ceil((time.monotonic() - started) / HEALTH_CHECK_CACHE)
            pings = _ping_calls(redis_server)
            assert 2 <= pings <= periods + 1
            assert probes > 20 * pings

            redis_server.pause()
            try:
                took = _probe_until(http, "/health", "degraded", 5.0)
                assert took < 5.0
                response = http.get("/health")
                assert (response.status_code, response.json()) == (200, {"status": "degraded"})
                response = http.get("/readyz")
                assert (response.status_code, response.json()) == (503, {"status": "degraded"})
                # Liveness never asks Redis: answered at once, frozen backend or not.
                asked = time.monotonic()
                assert http.get("/livez").json() == {"status": "alive"}
                assert time.monotonic() - asked < 1.0
            finally:
                redis_server.resume()
            _probe_until(http, "/health", "ok", 10.0)
            assert http.get("/readyz").status_code == 200
        hub.interrupt()
        assert hub.wait_exit(15) == 0, hub.output
    finally:
        hub.close()
