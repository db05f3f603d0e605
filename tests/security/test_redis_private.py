"""The Redis backend stores the private flag as a plain field and returns it on replay.

asyncio only on purpose: redis-py's asyncio client cannot run on trio.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

from ssehub.backends.redis import RedisBackend
from ssehub.broker import Broker

sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))
from redis_support import require_redis

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_private_flag_survives_redis() -> None:
    # Skips without Redis, fails instead under SSEHUB_REQUIRE_REDIS=1 (as in CI).
    require_redis()
    import redis.asyncio as redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    prefix = "sec-" + secrets.token_hex(4)
    backend = RedisBackend(
        "redis://127.0.0.1:6379/0", history_size=10, history_ttl=60, prefix=prefix
    )
    try:
        async with Broker(backend) as broker:
            first = await broker.publish("t", "public")
            secret = await broker.publish("t", "secret", private=True)
            assert secret.private
            replay = await broker.backend.replay(["t"], first.id)
            assert [(e.id, e.private) for e in replay.events] == [(secret.id, True)]
            async with broker.subscribe("t", first.id) as subscription:
                items = await subscription.receive()
                assert [(item.id, item.private) for item in items] == [(secret.id, True)]  # type: ignore[union-attr]
    finally:
        keys = [key async for key in client.scan_iter(match=f"ssehub:{{{prefix}}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
