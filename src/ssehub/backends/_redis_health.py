"""The Redis backend's health check: ``PING`` on a connection of its own, within a timeout.

Its own connection, not one of the command pool's: under load every pool connection may be busy
(a thousand clients resuming at once), and waiting for one would make a busy Redis look dead;
and a frozen Redis then holds this one connection, not a pool slot. It is opened on the first
check, so a process that is never probed never opens it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anyio

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Pinger"]

_CLOSE_WAIT: Final = 1.0
"""Seconds closing a failed connection may take (a frozen peer never acknowledges anything)."""


class Pinger:
    """Sends ``PING`` to Redis and says whether the answer came in time.

    Args:
        redis: the ``redis.asyncio`` module.
        url: the Redis URL (as the backend's).
        client_name: the connection's name in ``CLIENT LIST``.
    """

    def __init__(self, *, redis: Any, url: str, client_name: str) -> None:
        self._redis = redis
        self._url = url
        self._client_name = client_name
        self._client: Redis | None = None

    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 - silence is False
        """Return whether Redis answered ``PING`` within ``timeout`` seconds.

        Never raises for Redis being away (refused, reset, silent): that is ``False``, and the
        connection is dropped so that a late reply can never be read as the next one's.
        """
        redis = self._redis
        client = self._client
        if client is None:
            from redis import backoff as redis_backoff

            client = self._client = redis.Redis.from_url(
                self._url,
                single_connection_client=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # No retries: a retried PING would double the time a dead Redis costs a probe.
                retry=redis.retry.Retry(redis_backoff.NoBackoff(), 0),
                protocol=2,
                client_name=self._client_name,
            )
        try:
            # The socket timeouts are the first bound; this one also covers the connection
            # handshake (CLIENT SETNAME) and a ping with a shorter timeout than the first.
            with anyio.fail_after(timeout):
                return bool(await client.ping())
        except (TimeoutError, OSError, redis.RedisError):
            await self.aclose()
            return False

    async def aclose(self) -> None:
        """Close the connection, if open; bounded, since a frozen Redis acknowledges nothing."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(_CLOSE_WAIT, shield=True):
                await client.aclose()
