"""Fixtures of the Redis backend tests, requested by name: ``prefix`` (a fresh key prefix on the
shared Redis, deleted afterwards), ``broker`` (a Redis-backed broker on it, with a manual clock)
and ``server`` (a private redis-server of the test's own, for faults; see
:func:`redis_support.running_redis_server`). The memory-and-Redis conformance suite uses
``backend_runs`` instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis_support import (
    RedisServer,
    delete_prefix,
    redis_backend,
    require_redis,
    running_redis_server,
    unique_prefix,
)

from ssehub._clock import ManualClock
from ssehub.broker import Broker


@pytest.fixture
def prefix() -> Iterator[str]:
    require_redis()
    name = unique_prefix()
    yield name
    delete_prefix(name)


@pytest.fixture
async def broker(prefix: str) -> AsyncIterator[Broker]:
    async with Broker(redis_backend(prefix), clock=ManualClock()) as running:
        yield running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path) as running:
        yield running
