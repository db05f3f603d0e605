"""The issue's scenario, end to end: ``ssehub publish`` against a real ``ssehub serve`` whose Redis
(a server of its own on a free loopback port, never the shared one) is frozen with SIGSTOP.

Before: the hub answered 503 after the command timeout, and the event was published anyway once
Redis resumed, so a publisher retrying on 503 made duplicates. Now the hub answers 504 with
``"outcome": "unknown"`` for the publish Redis was sent, 503 only for attempts that could not
reach it; ``ssehub publish`` retries with the same ``Idempotency-Key``, and once Redis resumes
the event is in history exactly once, under the id the command prints.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import redis

from ssehub.client import HubClient, ReconnectPolicy

from .server_kit import REPO, ServerProcess, free_port

sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))
from redis_support import RedisServer, running_redis_server

pytestmark = [pytest.mark.integration, pytest.mark.redis]

TIMEOUT = 30.0  # spawning and importing a hub takes seconds on a loaded 2-core machine


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path) as server:
        yield server


def _lines(pipe: IO[str], into: queue.Queue[str]) -> None:
    for line in pipe:
        into.put(line)
    into.put("")


def test_ssehub_publish_survives_a_frozen_redis_and_publishes_once(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    broker = f"{redis_server.url}?socket_timeout=1"  # Redis commands give up after 1 s
    hub = ServerProcess(
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port), "--broker", broker],
        port,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        hub.wait_listening(timeout=TIMEOUT)
        with httpx.Client(base_url=base, timeout=10) as http:
            warm = http.post("/publish", json={"topic": "orders", "data": "warm"})
            assert warm.status_code == 200, warm.text

        redis_server.pause()
        command = [sys.executable, "-m", "ssehub.cli", "publish", "--url", base, "orders", "paid"]
        publisher = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert publisher.stderr is not None
            errors: queue.Queue[str] = queue.Queue()
            threading.Thread(target=_lines, args=(publisher.stderr, errors), daemon=True).start()
            first = errors.get(timeout=TIMEOUT)
            # The hub sent the publish to Redis and got no answer: unknown, not "unavailable".
            assert "attempt 1 failed: HTTP 504 (outcome_unknown)" in first, first
            redis_server.resume()
            out, _ = publisher.communicate(timeout=TIMEOUT)
        finally:
            if publisher.poll() is None:
                publisher.kill()
                publisher.wait()
        assert publisher.returncode == 0, out
        printed = out.strip().split()[0].removeprefix("id=")

        # History holds the event once, under the printed id: a replay from "warm" sees it,
        # then the marker, and nothing in between.
        with HubClient(base) as client:
            end = client.publish("orders", "end")
            policy = ReconnectPolicy(initial_retry=0.01, max_delay=0.1)
            with client.subscribe("orders", warm.json()["id"], policy=policy) as source:
                seen = []
                for event in source:
                    seen.append((event.id, event.data))
                    if event.id == end.id:
                        break
        assert seen == [(printed, "paid"), (end.id, "end")]
        direct = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5)
        try:
            assert direct.xlen("ssehub:{default}:t:orders") == 3  # warm, paid, end
        finally:
            direct.close()
        hub.interrupt()
        assert hub.wait_exit(15) == 0, hub.output
    finally:
        hub.close()
