"""Resource limits: open streams (total, per address, per token) and publish rates.

Each limit answers 429 with a JSON body *before* anything happens: no stream is opened, no
event is published (the patterns of one subscription: 400, as for its topics). Counters live
in this process (a fleet of hubs enforces them per process).

Connection counts are leases: :meth:`ConnectionLimiter.acquire` returns a :class:`Lease` that
the stream releases when it ends, however it ends. Rates are token buckets refilled on the
broker's clock (so tests drive them with ``ManualClock``); a bucket that is full again is
forgotten, so memory follows the number of recently active publishers, not every address ever
seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ..broker.patterns import is_pattern
from ._errors import HubHTTPError

if TYPE_CHECKING:
    from .._clock import Clock

__all__ = [
    "ConnectionLimiter",
    "Lease",
    "RateLimiter",
    "check_pattern_count",
    "check_topic_lengths",
]

_PRUNE_AT: Final = 4096  # buckets kept before full (idle) ones are forgotten


class Lease:
    """One open stream's place in the :class:`ConnectionLimiter`; release it exactly once."""

    __slots__ = ("_keys", "_limiter")

    def __init__(self, limiter: ConnectionLimiter, keys: tuple[str, ...]) -> None:
        self._limiter: ConnectionLimiter | None = limiter
        self._keys = keys

    def release(self) -> None:
        """Give the place back; idempotent."""
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter._release(self._keys)


class ConnectionLimiter:
    """Count open streams in total, per client address and per credential.

    Args:
        total: most open streams.
        per_address: most open streams from one client address.
        per_token: most open streams with one credential (JWT or API key).
    """

    def __init__(self, *, total: int, per_address: int, per_token: int) -> None:
        self.total = total
        self.per_address = per_address
        self.per_token = per_token
        self.open = 0
        self._counts: dict[str, int] = {}

    def acquire(self, address: str | None, identity: str | None) -> Lease:
        """Take a place for a new stream.

        Args:
            address: the client's address (``None`` when unknown: not counted per address).
            identity: the credential's identity (``None`` for anonymous requests).

        Returns:
            The lease; call :meth:`Lease.release` when the stream ends.

        Raises:
            HubHTTPError: ``too_many_connections`` (429).
        """
        if self.open >= self.total:
            raise _busy(f"the hub has reached its limit of {self.total} open streams")
        keys: list[str] = []
        counts = self._counts
        if address is not None:
            key = "a:" + address
            if counts.get(key, 0) >= self.per_address:
                raise _busy(f"at most {self.per_address} open streams per client address")
            keys.append(key)
        if identity is not None:
            key = "t:" + identity
            if counts.get(key, 0) >= self.per_token:
                raise _busy(f"at most {self.per_token} open streams per token")
            keys.append(key)
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        self.open += 1
        return Lease(self, tuple(keys))

    def _release(self, keys: tuple[str, ...]) -> None:
        self.open -= 1
        counts = self._counts
        for key in keys:
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def count(self, *, address: str | None = None, identity: str | None = None) -> int:
        """Return the open streams of ``address`` or ``identity`` (the total without either)."""
        if address is not None:
            return self._counts.get("a:" + address, 0)
        if identity is not None:
            return self._counts.get("t:" + identity, 0)
        return self.open


def _busy(detail: str) -> HubHTTPError:
    # Retry-After: a client that backs off a few seconds finds a place when others have left.
    return HubHTTPError("too_many_connections", detail, {"Retry-After": "5"})


class RateLimiter:
    """Token buckets per publisher: ``rate`` events per second, bursts of up to ``burst``.

    Args:
        rate: events per second refilled.
        burst: bucket size (the largest burst, and the largest batch a publisher can send).
        clock: the clock buckets refill on (the broker's).
    """

    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def take(self, key: str, count: int) -> None:
        """Spend ``count`` tokens of ``key``'s bucket.

        Raises:
            HubHTTPError: ``rate_limited`` (429, with ``Retry-After``); nothing was spent.
        """
        now = self.clock.time()
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if count > tokens:
            wait = math.inf if count > self.burst else (count - tokens) / self.rate
            retry_after = "60" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise HubHTTPError(
                "rate_limited",
                f"publish rate limit: {self.rate:g} events/s, bursts of {self.burst}",
                {"Retry-After": retry_after},
            )
        if len(self._buckets) >= _PRUNE_AT:
            self._prune(now)
        self._buckets[key] = (tokens - count, now)

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def check_topic_lengths(topics: Iterable[str], limit: int) -> None:
    """Refuse topics longer than the hub's configured ``limit``.

    Raises:
        HubHTTPError: ``invalid_topic`` (400).
    """
    for topic in topics:
        if len(topic) > limit:
            raise HubHTTPError("invalid_topic", f"invalid topic: longer than {limit} characters")


def check_pattern_count(topics: Iterable[str], limit: int) -> None:
    """Refuse a subscription with more than ``limit`` patterns (topics with ``*``).

    Raises:
        HubHTTPError: ``too_many_topics`` (400).
    """
    count = sum(1 for topic in topics if is_pattern(topic))
    if count > limit:
        raise HubHTTPError(
            "too_many_topics", f"too many patterns (at most {limit} per subscription)"
        )
