"""Backends under test: each conformance test runs once per (backend, event loop) pair.

The memory backend runs on asyncio and on trio, like the rest of the suite. The Redis backend
runs on asyncio only, on purpose: redis-py's client (``redis.asyncio``) is asyncio-only, so the
pair (Redis, trio) is never generated (rather than generated and skipped). That the backend
refuses trio clearly is tested once, in ``test_redis_backend.py``.

To add a backend, add its pairs to ``BACKEND_RUNS``: a factory taking
``(history_size, history_ttl)`` that returns a fresh, isolated, not yet started backend (for
Redis: a unique key prefix per test), with the event loops it supports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from redis_support import redis_factory  # skips without Redis (fails with SSEHUB_REQUIRE_REDIS=1)

from ssehub.backends import Backend, MemoryBackend
from ssehub.broker import Subscription

BackendFactory = Callable[[int, float], Backend]

ASYNCIO = ("asyncio", {"use_uvloop": False})
TRIO = ("trio", {})


def _memory(history_size: int, history_ttl: float) -> Backend:
    return MemoryBackend(history_size=history_size, history_ttl=history_ttl)


BACKEND_RUNS = [
    pytest.param(_memory, ASYNCIO, id="memory-asyncio"),
    pytest.param(_memory, TRIO, id="memory-trio"),
    pytest.param(redis_factory, ASYNCIO, id="redis-asyncio", marks=pytest.mark.redis),
]
"""``(backend_factory, anyio_backend)`` pairs: apply with ``parametrize_backends``."""

parametrize_backends = pytest.mark.parametrize(("backend_factory", "anyio_backend"), BACKEND_RUNS)
"""A mark that runs a test once per pair of ``BACKEND_RUNS``; it overrides the suite-wide
``anyio_backend`` fixture (which would pair every backend with both loops)."""


async def collect(sub: Subscription, count: int) -> list[Any]:
    """Receive until ``count`` items came (the Redis reader delivers live events a little later)."""
    items: list[Any] = []
    with anyio.fail_after(10):
        while len(items) < count:
            items.extend(await sub.receive())
    return items
