"""Helpers for tests against a real Redis: availability, isolation, and a private server.

- :func:`require_redis` skips a test when nothing answers on 127.0.0.1:6379, or fails it when
  ``SSEHUB_REQUIRE_REDIS=1`` (set by ``.ci/run``), so CI can never pass by skipping.
- Redis tests run on asyncio only, on purpose: redis-py's client (``redis.asyncio``) is
  asyncio-only, so the backend is too (under trio it refuses to start, tested once). Modules of
  Redis-only tests override ``anyio_backend`` with ``"asyncio"``; the conformance suite pairs
  each backend with the loops it supports (``backend_runs``). Nothing is skipped for trio.
- :class:`CleaningRedisBackend` gets a unique key prefix and deletes its keys when it closes.
- :class:`RedisServer` runs a private ``redis-server`` on a free port that fault tests stop,
  kill and restart on the same port.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.backoff
import redis.retry

from integration.test_hub_server import free_port
from ssehub.backends.redis import RedisBackend

__all__ = [
    "REDIS_URL",
    "CleaningRedisBackend",
    "RedisServer",
    "delete_prefix",
    "redis_factory",
    "require_redis",
    "unique_prefix",
]

REDIS_URL = "redis://127.0.0.1:6379/0"


@functools.cache
def _redis_problem(url: str = REDIS_URL) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis answers at {url} ({exc})"
    finally:
        client.close()
    return None


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (or fail, when ``SSEHUB_REQUIRE_REDIS=1``) unless Redis answers at ``url``."""
    problem = _redis_problem(url)
    if problem is None:
        return
    if os.environ.get("SSEHUB_REQUIRE_REDIS") == "1":
        pytest.fail(f"{problem}; SSEHUB_REQUIRE_REDIS=1 makes this a failure")
    pytest.skip(f"{problem}; start redis-server on 127.0.0.1:6379 to run this test")


def unique_prefix() -> str:
    """Return a key prefix no other test uses."""
    return "test-" + uuid.uuid4().hex[:12]


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key of ``prefix``; return how many there were."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"ssehub:{{{prefix}}}:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


class CleaningRedisBackend(RedisBackend):
    """A :class:`RedisBackend` that deletes its keys when closed (for isolated tests)."""

    async def aclose(self) -> None:
        await super().aclose()
        with contextlib.suppress(redis.RedisError):
            delete_prefix(self.prefix, self.url)


def redis_backend(prefix: str, **options: object) -> RedisBackend:
    """A backend on the shared Redis under ``prefix`` (history of 100 events, an hour)."""
    options.setdefault("history_size", 100)
    options.setdefault("history_ttl", 3600.0)
    return RedisBackend(REDIS_URL, prefix=prefix, **options)  # type: ignore[arg-type]


def redis_factory(history_size: int, history_ttl: float) -> RedisBackend:
    """A conformance-suite backend factory: a fresh prefix on the shared Redis."""
    require_redis()
    return CleaningRedisBackend(
        REDIS_URL, history_size=history_size, history_ttl=history_ttl, prefix=unique_prefix()
    )


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 that a test can stop, kill and restart.

    Persistence is off (``--save "" --appendonly no``), as in the brief of these tests; a
    graceful :meth:`stop` with ``save=True`` still writes a snapshot (``SHUTDOWN SAVE``), which
    the next :meth:`start` loads, to model a planned restart that keeps the data.

    Args:
        directory: where the snapshot goes.
    """

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            if os.environ.get("SSEHUB_REQUIRE_REDIS") == "1":
                pytest.fail("redis-server is not installed; SSEHUB_REQUIRE_REDIS=1")
            pytest.skip("redis-server is not installed")
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it accepts connections (it says so on stdout)."""
        assert self.process is None
        process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process = process
        assert process.stdout is not None
        # Read the log until the ready line; a timer kills a server that never gets there.
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        lines: list[str] = []
        try:
            for line in process.stdout:
                lines.append(line)
                if "Ready to accept connections" in line:
                    break
            else:
                raise RuntimeError("redis-server did not start:\n" + "".join(lines[-20:]))
        finally:
            watchdog.cancel()
        # Keep draining the log so the server never blocks on a full pipe.
        self._drainer = threading.Thread(target=_drain, args=(process,), daemon=True)
        self._drainer.start()

    def stop(self, *, save: bool = False) -> None:
        """Shut the server down cleanly (``SHUTDOWN SAVE`` keeps the data for the next start)."""
        process = self.process
        if process is None:
            return
        # No retries: the server closing the connection is the expected answer to SHUTDOWN,
        # and redis-py's default retry policy would spend seconds of backoff retrying it.
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(save=save, nosave=not save)
        client.close()
        self._reap(process)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): like a network that drops packets, no reset, no answer."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the server (SIGCONT) after :meth:`pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server (SIGKILL): its data is lost, clients see connections reset."""
        process = self.process
        if process is None:
            return
        process.send_signal(signal.SIGKILL)
        self._reap(process)

    def _reap(self, process: subprocess.Popen[str]) -> None:
        process.wait(timeout=10)
        if self._drainer is not None:
            self._drainer.join(timeout=10)  # it ends at EOF, now that the server has exited
            self._drainer = None
        assert process.stdout is not None
        process.stdout.close()
        self.process = None


@contextlib.contextmanager
def running_redis_server(directory: Path) -> Iterator[RedisServer]:
    """A private Redis server for one test, started, and killed afterwards; a frozen one
    (SIGSTOP) is resumed first, so no test leaves a stopped process behind, even failing."""
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.kill()


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass
