"""The Redis backend's reader: the one task per process that tails the global log.

It reads the log (``ssehub:{<prefix>}:log``) with a blocking ``XREAD`` from the last id it
delivered and hands each event to the broker's sink, whoever published it. Publishers of this
process wait for it to pass their own events (:meth:`LogReader.delivered`), so that a
subscriber that exists when a publish returns has the event, as with the memory backend.

It never gives up: on any Redis error it backs off, then checks what it may have missed while
away (the log trimmed past its last id, or Redis losing its data) and resumes after the last id
it delivered, so subscribers keep their streams open and miss nothing Redis kept.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._exceptions import BackendUnavailable
from ._redis_codec import decode_entry, stream_position, text

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .._clock import Clock
    from ..broker.events import Position
    from .base import EventSink

__all__ = ["BLOCK_MS", "LogReader", "Tail"]

logger = logging.getLogger("ssehub.backends.redis")

BLOCK_MS: Final = 10_000
"""How long one ``XREAD`` waits for new entries; the reader's socket timeout is 5 s above it, so
a dead Redis (no RST, e.g. a pulled cable) is noticed within 15 s, quiet or not."""

_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 5.0
"""Reader reconnect delays (seconds): doubling from 50 ms up to 5 s, like redis-py's own retry
helpers, so a restart is caught within a second and a long outage costs ~1 attempt in 5 s."""

_READ_COUNT: Final = 1000  # entries per XREAD: bounds one wake-up's work and memory

Tail = Callable[[], Awaitable[tuple[str | None, str | None, str | None]]]
"""Reads ``(epoch, newest id, newest id trimmed from the log)`` from Redis, each ``None`` when
unset; raises :class:`~ssehub.BackendUnavailable` when Redis cannot be reached."""


class LogReader:
    """Tails the global log and feeds the sink; publishers wait on it for their own events.

    The backend connects :attr:`client` and sets :attr:`sink`, :attr:`epoch`, :attr:`last_id`
    and :attr:`connected` when it starts, then runs :meth:`read_forever` in its task group.

    Args:
        redis: the ``redis.asyncio`` module (its ``RedisError`` is what the reader recovers from).
        log_key: the key of the global log stream.
        tail: reads the end of the log (see :data:`Tail`), after a reconnect.
        timestamp: gives the broker-clock time at which an event of a position was stored.
        reconnect_clock: the clock the reconnect backoff waits on (real time in production).
        publish_wait: seconds a publisher waits for its events at most (:meth:`delivered`).
        on_reconnect: called each time the reader reaches Redis again after losing it.

    Attributes:
        client: the reader's own connection (one, whatever the number of subscribers).
        sink: where events go; ``None`` once the backend is closed.
        last_id: the stream id (``<ms>-<seq>``, not the event id) of the last entry delivered.
        epoch: the epoch of the data set the reader is reading, ``None`` before any publish.
        connected: whether the last read reached Redis.
        reconnects: how many times the reader has reconnected to Redis after losing it.
        gaps: how many times the reader found that events it had not read left the log.
    """

    def __init__(
        self,
        *,
        redis: Any,
        log_key: str,
        tail: Tail,
        timestamp: Callable[[Position], float],
        reconnect_clock: Clock,
        publish_wait: float,
        on_reconnect: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._log_key = log_key
        self._tail = tail
        self._timestamp = timestamp
        self._reconnect_clock = reconnect_clock
        self._publish_wait = publish_wait
        self._on_reconnect = on_reconnect
        self.client: Redis | None = None
        self.sink: EventSink | None = None
        self.last_id = "0-0"
        self.epoch: str | None = None
        self.connected = False
        self.reconnects = 0
        self.gaps = 0
        # Publishers waiting for the reader to deliver their events locally: (position, n, event)
        self._waiters: list[tuple[Position, int, anyio.Event]] = []
        self._waiter_count = 0

    async def delivered(self, position: Position) -> None:
        """Wait until the reader has passed ``position``, for ``publish_wait`` seconds at most.

        Not while the reader is reconnecting: it may be backing off for seconds, and holding
        every publisher that long would turn a blip into a publishing outage. The events are
        stored; the reader delivers them when it is back.

        Args:
            position: the position of the last event of a publish.
        """
        if not self.connected or stream_position(self.last_id) >= position:
            return
        done = anyio.Event()
        self._waiter_count += 1
        heapq.heappush(self._waiters, (position, self._waiter_count, done))
        with anyio.move_on_after(self._publish_wait):
            await done.wait()

    async def read_forever(self) -> None:
        """Tail the log and feed the sink; on any Redis error back off and resume."""
        delay = _BACKOFF_FIRST
        recovering = False
        while True:
            try:
                if recovering:
                    await self._check_gap()
                    recovering = False
                    self.reconnects += 1
                    self.connected = True
                    # Redis answered the reader: the backend's commands will work again too.
                    self._on_reconnect()
                    delay = _BACKOFF_FIRST
                await self._read_batch()
                self.connected = True
            except (BackendUnavailable, self._redis.RedisError) as exc:  # noqa: PERF203 - the loop *is* the retry
                if self.connected:
                    logger.warning("lost Redis; reconnecting (last id %s): %s", self.last_id, exc)
                self.connected = False
                self.release_waiters()
                recovering = True
                # Not the broker's clock: a manual clock that only ages history would stall the
                # reader here forever (the cause of a hang when a test drove history by hand).
                clock = self._reconnect_clock
                await clock.sleep_until(clock.time() + delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    async def _read_batch(self) -> None:
        client = self.client
        assert client is not None
        reply: Any = await client.xread(
            {self._log_key: self.last_id}, count=_READ_COUNT, block=BLOCK_MS
        )
        if not reply:
            return
        for _, entries in reply:
            for entry_id, fields in entries:
                self.last_id = text(entry_id)
                try:
                    stored = decode_entry(entry_id, fields, None, self._timestamp)
                except (KeyError, TypeError, ValueError) as exc:
                    # Not written by our publish script (someone else wrote to the key):
                    # skip it rather than let one bad entry stop every stream of this process.
                    message = "skipping malformed Redis log entry %s: %r"
                    logger.error(message, self.last_id, exc)  # noqa: TRY400 - no traceback
                    continue
                self.epoch = stored.id.partition("-")[0]
                sink = self.sink
                if sink is not None:
                    sink(stored)
        waiters = self._waiters
        if waiters:
            last = stream_position(self.last_id)
            while waiters and waiters[0][0] <= last:
                heapq.heappop(waiters)[2].set()

    def release_waiters(self) -> None:
        """Let every publisher waiting for the reader go (see :meth:`delivered`)."""
        while self._waiters:
            heapq.heappop(self._waiters)[2].set()

    async def _check_gap(self) -> None:
        """After a reconnect: did anything we had not read leave the log, or Redis lose data?"""
        epoch, last, gone = await self._tail()
        mine = stream_position(self.last_id)
        if gone is not None and stream_position(gone) > mine and epoch == self.epoch:
            self.gaps += 1
            logger.error(
                "the Redis log was trimmed past this hub's last id %s while it was disconnected;"
                " events up to %s were not delivered to its subscribers (raise log_size)",
                self.last_id,
                gone,
            )
        if epoch != self.epoch:
            # A restart without persistence or a flush: whatever Redis had accepted and not yet
            # delivered is gone from Redis itself. Everything in the log now is of the new data
            # set and new to us, so read it from the start: its ids owe nothing to ours (a
            # publisher's clock may be behind the ms of our last id) and XREAD after our last
            # id could skip them. The epoch of what we read is tracked from the entries
            # (field ``p``), so an empty data set (``epoch`` None) is not mistaken again later.
            logger.warning("Redis lost its data (restart without persistence, or a flush)")
            self.last_id = "0-0"
            self.release_waiters()  # their positions belong to the lost data set
            self.epoch = epoch
        del last
