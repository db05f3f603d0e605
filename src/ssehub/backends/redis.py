"""The Redis Streams backend: hub processes on many machines share topics, history and resume.

One Lua script per publish appends each event to a global log stream under a stream id
``<ms>-<seq>`` that is strictly increasing across every process (Redis assigns ``<seq>``), and to
the stream of each of its topics under the same id (key layout in
:mod:`ssehub.backends._redis_scripts`). The event id is ``<epoch>-<ms>-<seq>``: the epoch is a
random token of the data set, so after Redis loses its data (a restart without persistence, a
flush) old ids are recognised as unknown instead of being compared with new ones. Every hub process
runs one reader task that tails the log with a blocking ``XREAD`` from the last id it delivered
and hands each event to the broker, which encodes it once and fans it out locally
(:mod:`ssehub.backends._redis_reader`). A resume reads the topic streams with ``XRANGE`` after
the client's id (:mod:`ssehub.backends._redis_replay`): global ids make one ``Last-Event-ID``
exact for a multi-topic subscription on any process, including one that never saw the client. A
resume with patterns lists the topics and the log's tip first, and cuts the replay there
(:mod:`ssehub.backends._redis_patterns`).

Connections are bounded: a pool of ``max_connections`` for commands plus one for the reader,
whatever the number of subscribers. Entries are plain fields (text and JSON), never pickle.

Faults: a command that cannot reach Redis raises :class:`~ssehub.BackendUnavailable` (the hub
answers 503 and reports itself degraded through :attr:`RedisBackend.healthy`), except a publish
sent and not answered, which may be stored: :class:`~ssehub.PublishOutcomeUnknown` (the hub
answers 504; :mod:`ssehub.backends._redis_publish`), made safe to retry by idempotency keys. The
reader never gives up: it reconnects with exponential backoff and resumes after the last id it
delivered, so subscribers keep their streams open and miss nothing Redis kept.

redis-py's client (``redis.asyncio``) runs on asyncio only, so this backend does too: under
trio, :meth:`RedisBackend.start` raises :class:`~ssehub.ConfigurationError`.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._clock import Clock, SystemClock
from .._exceptions import (
    BackendUnavailable,
    BrokerClosed,
    ConfigurationError,
)
from ..broker.events import Position, ResetReason, StoredEvent
from ..broker.history import HistoryBudget
from . import _redis_budget, _redis_patterns
from ._redis_client import import_redis as _import_redis
from ._redis_client import require_asyncio as _require_asyncio
from ._redis_client import unavailable as _unavailable
from ._redis_codec import parse_event_id, text
from ._redis_health import Pinger
from ._redis_publish import (
    attempt,
    publish_arguments,
    publish_error,
    stored_events,
    tracking_pool_class,
)
from ._redis_reader import BLOCK_MS, LogReader
from ._redis_replay import SharedReads, replay_from_snapshot
from ._redis_scripts import (
    EXPIRE_LUA,
    FORGET_LUA,
    LIST_LUA,
    PUBLISH_LUA,
    REPLAY_LUA,
    SIZES_LUA,
    TAIL_LUA,
)
from .base import EventSink, PendingEvent, Replay

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "DEFAULT_LOG_SIZE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PREFIX",
    "RedisBackend",
    "parse_event_id",
]

logger = logging.getLogger("ssehub.backends.redis")

DEFAULT_PREFIX: Final = "default"
"""Key prefix: keys are ``ssehub:{<prefix>}:...``. Hubs that share a prefix share topics."""

DEFAULT_LOG_SIZE: Final = 100_000
"""Entries kept in the global log. Only readers that lost Redis for a while read old entries;
100 000 covers about 100 s of a very busy hub (1 000 events/s) and costs ~10-50 MiB."""

DEFAULT_MAX_CONNECTIONS: Final = 10
"""Command connections per process (publish, replay); the reader has its own one. Each command
is one short round trip (the work is in Lua scripts), so a few connections serve many clients."""

DEFAULT_SOCKET_TIMEOUT: Final = 5.0
"""Seconds a command may wait for Redis before the publish or resume fails with 503: redis-py's
default, well under the 30-60 s idle timeouts of common proxies."""

_POOL_WAIT: Final = 60.0
"""Seconds a command may wait for a free pool connection. Not ``socket_timeout``: a queue of
commands (1 000 clients resuming at once) is load, not Redis being away, and must not turn into
503s; a Redis that is away fails each command fast on its own connection instead."""

_EXPIRE_BATCH: Final = 10
"""Topics that aged out entirely, removed at most per publish (plus one per topic the publish
touches, so removal keeps up with creation: every topic was created by a publish that paid for
its removal) and per listing of every topic. Each removal is O(1) work plus an ``UNLINK``."""

_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_OUR_QUERY_OPTIONS: Final = ("prefix", "log_size", "max_connections", "socket_timeout")


class RedisBackend:
    """A :class:`~ssehub.backends.Backend` on Redis Streams, shared by any number of processes.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://...`` (TLS), with any
            option redis-py understands in the query string.
        history_size: events kept per topic (at least 1); trimming is exact.
        history_ttl: seconds an event is kept (``> 0``), measured on Redis's clock (the clock
            that stamps the ids), so every process agrees; the broker's clock is not used.
        prefix: the key prefix (1-64 characters of ``[A-Za-z0-9_.:-]``); hubs share topics
            exactly when they share Redis and the prefix.
        log_size: entries kept in the global log, which readers that were disconnected catch
            up from (at least ``history_size``).
        max_connections: command connections per process; the reader has one more.
        socket_timeout: seconds before a command to an unresponsive Redis fails.
        reconnect_clock: the clock the reader's reconnect backoff waits on; real time by
            default. It is not the broker's clock (which ages history and may be a test's
            manual clock): reconnecting is about a real server coming back.
        budget: the largest event and the history's byte and topic bounds (``HistoryBudget()``).

    Raises:
        ConfigurationError: an option is out of range.
        MissingDependency: redis-py is not installed (``pip install 'ssehub[redis]'``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        prefix: str = DEFAULT_PREFIX,
        log_size: int = DEFAULT_LOG_SIZE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        reconnect_clock: Clock | None = None,
        budget: HistoryBudget | None = None,
    ) -> None:
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ConfigurationError("history_size must be an int >= 1")
        if isinstance(history_ttl, bool) or not isinstance(history_ttl, (int, float)):
            raise ConfigurationError("history_ttl must be a number of seconds")
        if not history_ttl > 0:
            raise ConfigurationError("history_ttl must be > 0")
        if not isinstance(prefix, str) or _PREFIX_RE.fullmatch(prefix) is None:
            raise ConfigurationError("prefix must be 1-64 characters of [A-Za-z0-9_.:-]")
        if isinstance(log_size, bool) or not isinstance(log_size, int) or log_size < history_size:
            raise ConfigurationError("log_size must be an int >= history_size")
        if max_connections < 1:
            raise ConfigurationError("max_connections must be >= 1")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("redis", "rediss"):
            raise ConfigurationError("the Redis backend URL must start with redis:// or rediss://")
        self._redis = _import_redis()
        self.url = url
        self.history_size = history_size
        self.history_ttl = float(history_ttl)
        self.prefix = prefix
        self.log_size = log_size
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        base = f"ssehub:{{{prefix}}}:"
        self._topic_prefix = base + "t:"
        # log, meta, gone, newest (sorted set), topics (the plain set of older versions)
        self._keys = [base + "log", base + "meta", base + "gone", base + "newest", base + "topics"]
        self._idempotency_keys = [base + "idem", base + "idemt"]
        self.budget, self._budget_keys = budget or HistoryBudget(), _redis_budget.keys(base)
        self.history_bytes = 0  # all topic streams, as of the last history_usage()
        self._ttl_ms = max(1, round(self.history_ttl * 1000))
        self._client: Redis | None = None
        self._publish_script: AsyncScript | None = None
        self._replay_script: AsyncScript | None = None
        self._sizes_script: AsyncScript | None = None
        self._tail_script: AsyncScript | None = None
        self._forget_script: AsyncScript | None = None
        self._expire_script: AsyncScript | None = None
        self._list_script: AsyncScript | None = None
        self._clock: Clock = SystemClock()
        self._anchor_ms = 0
        self._anchor_clock = 0.0
        self._commands_ok = True
        self._reader = LogReader(
            redis=self._redis,
            log_key=self._keys[0],
            tail=self._tail,
            timestamp=self._timestamp,
            reconnect_clock=reconnect_clock or SystemClock(),
            publish_wait=socket_timeout,
            on_reconnect=self._reader_reconnected,
        )
        self._shared_replay = SharedReads(self._replay)
        self._pinger = Pinger(redis=self._redis, url=url, client_name=f"ssehub:{prefix}")

    @classmethod
    def from_url(
        cls, url: str, *, history_size: int, history_ttl: float, budget: HistoryBudget | None = None
    ) -> RedisBackend:
        """Create from a URL; ssehub's own options ride in the query string.

        ``prefix``, ``log_size``, ``max_connections`` and ``socket_timeout`` (seconds) are taken
        out of the query (e.g. ``redis://127.0.0.1:6379/0?prefix=shop``); every other parameter
        goes to redis-py.

        Raises:
            ConfigurationError: an option is invalid.
            MissingDependency: redis-py is not installed.
        """
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in _OUR_QUERY_OPTIONS:
                ours[name] = value
            else:
                rest.append((name, value))
        options: dict[str, Any] = {}
        if "prefix" in ours:
            options["prefix"] = ours["prefix"]
        for name, kind in (("log_size", int), ("max_connections", int), ("socket_timeout", float)):
            if name in ours:
                try:
                    options[name] = kind(ours[name])
                except ValueError:
                    what = "an integer" if kind is int else "a number of seconds"
                    raise ConfigurationError(f"{name} must be {what}") from None
        options.setdefault("log_size", max(DEFAULT_LOG_SIZE, history_size))
        redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
        options["budget"] = budget
        return cls(redis_url, history_size=history_size, history_ttl=history_ttl, **options)

    @property
    def healthy(self) -> bool:
        """Whether Redis answers: the reader is connected and the last command succeeded.

        The hub's ``/health`` reports "degraded" while this is false; publishes fail with
        :class:`~ssehub.BackendUnavailable` then, and open streams wait for the reader.
        """
        return self._reader.connected and self._commands_ok

    @property
    def last_stream_id(self) -> str:
        """The stream id (``<ms>-<seq>``) of the last entry the reader delivered, or ``"0-0"``."""
        return self._reader.last_id

    @property
    def reconnects(self) -> int:
        """How many times the reader has reconnected to Redis after losing it."""
        return self._reader.reconnects

    @property
    def gaps(self) -> int:
        """How many times the reader found that events it had not read left the log."""
        return self._reader.gaps

    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 - silence is False
        """Return whether Redis answers ``PING`` within ``timeout`` seconds, on a connection of
        its own (see :mod:`ssehub.backends._redis_health`); ``False`` before :meth:`start`.

        The answer also updates :attr:`healthy`: Redis answering clears a failed command's mark
        (a quiet hub is not left "degraded" after a blip), and silence sets it.
        """
        if self._client is None:
            return False
        self._commands_ok = await self._pinger.ping(timeout)
        return self._commands_ok

    def _reader_reconnected(self) -> None:
        # Redis answered the reader, so commands will work again too: a quiet hub (nobody
        # publishing) would otherwise report "degraded" long after a blip.
        self._commands_ok = True

    def _now_ms(self) -> int:
        """Redis's time in ms, as read at start and advanced by the broker's clock since."""
        return self._anchor_ms + round((self._clock.time() - self._anchor_clock) * 1000)

    def _timestamp(self, position: Position) -> float:
        """The broker-clock time at which an event with this position was stored."""
        return self._anchor_clock + (position[0] - self._anchor_ms) / 1000

    def _topic_key(self, topic: str) -> str:
        return self._topic_prefix + topic

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, sink: EventSink, clock: Clock, task_group: TaskGroup) -> None:
        """Connect, find the end of the log, and start the reader task in ``task_group``.

        Raises:
            BackendUnavailable: Redis cannot be reached.
            ConfigurationError: not running on asyncio.
        """
        _require_asyncio()
        redis = self._redis
        from redis import backoff as redis_backoff

        retry = redis.retry.Retry(redis_backoff.NoBackoff(), 0)
        # Commands are never retried by redis-py: a publish retried after a lost reply could be
        # stored twice. Failing fast lets the caller (and the hub's 503) decide.
        # A blocking pool: when every connection is busy (1 000 clients resuming at once), a
        # command waits its turn instead of failing with "too many connections".
        # The pool tells a publish that failed before its command was sent from one that was
        # sent and not answered (_redis_publish.py).
        pool = tracking_pool_class(redis.BlockingConnectionPool).from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=_POOL_WAIT,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=retry,
            protocol=2,
            client_name=f"ssehub:{self.prefix}",  # visible in CLIENT LIST, for operators
        )
        self._client = redis.Redis.from_pool(pool)
        self._reader.client = redis.Redis.from_url(
            self.url,
            single_connection_client=True,
            socket_timeout=BLOCK_MS / 1000 + 5,
            socket_connect_timeout=self.socket_timeout,
            retry=retry,
            protocol=2,
            client_name=f"ssehub:{self.prefix}",
        )
        client = self._client
        self._publish_script = client.register_script(PUBLISH_LUA)
        self._replay_script = client.register_script(REPLAY_LUA)
        self._sizes_script = client.register_script(SIZES_LUA)
        self._tail_script = client.register_script(TAIL_LUA)
        self._forget_script = client.register_script(FORGET_LUA)
        self._expire_script = client.register_script(EXPIRE_LUA)
        self._list_script = client.register_script(LIST_LUA)
        self._clock = clock
        try:
            seconds, micros = await client.time()
            self._anchor_clock = clock.time()
            self._anchor_ms = seconds * 1000 + micros // 1000
            epoch, last, _ = await self._tail()
        except (BackendUnavailable, redis.RedisError) as exc:
            await self.aclose()
            if isinstance(exc, BackendUnavailable):
                raise
            raise _unavailable("connect", exc) from exc
        reader = self._reader
        reader.sink = sink
        reader.epoch = epoch
        reader.last_id = last or "0-0"
        reader.connected = True
        task_group.start_soon(reader.read_forever, name=f"ssehub redis reader {self.prefix}")

    async def aclose(self) -> None:
        """Close both connection pools; idempotent."""
        reader = self._reader
        reader.sink = None
        reader.connected = False
        reader.release_waiters()  # publishers waiting for the reader: it reads no more
        for client in (reader.client, self._client):
            if client is not None:
                await client.aclose()
        reader.client = self._client = None
        await self._pinger.aclose()

    # -- publish ---------------------------------------------------------------------------------

    async def publish(
        self,
        batch: Sequence[PendingEvent],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[StoredEvent]:
        """Store ``batch`` atomically (one Lua script) and return it with Redis-assigned ids.

        The events reach the sink through the reader, like events published by other processes;
        this returns once the reader has handed them to the sink (at once if the reader is
        reconnecting, and after ``socket_timeout`` seconds at most: the events are stored and
        will follow). So, as with the memory backend, a subscriber that exists when ``publish``
        returns has the event, and one created after it does not get it as a live event.

        A publish also removes a few topics whose every event aged out (their keys, see
        :mod:`ssehub.backends._redis_scripts`): one more round trip, only when there are some.

        Idempotency keys are remembered for ``history_ttl`` (at most ``log_size`` of them), and
        checked and recorded by the same script that appends, so concurrent publishes with one
        key (from any process) store one event. A repeated event does not reach the sink again.

        Raises:
            BackendUnavailable: Redis cannot be reached (nothing was published) or refused the
                write (out of memory, read-only replica).
            PublishOutcomeUnknown: the script was sent and not answered within
                ``socket_timeout`` (or the connection broke meanwhile): it may be stored, now or
                when Redis resumes; a retry with the same idempotency keys is safe.
            IdempotencyKeyReused: a key names a different publication; nothing was published.
            EventTooLarge: an event is over ``budget.max_event_size``; nothing was sent.
            BrokerClosed: the backend is not started.
        """
        return await self._append(batch, idempotency_keys, transient=False)

    async def publish_transient(self, batch: Sequence[PendingEvent]) -> list[StoredEvent]:
        """Append ``batch`` to the log only, so every process's reader delivers it but no
        topic stream keeps it (see :func:`ssehub.backends.base.publish_transient`).

        Raises:
            As :meth:`publish`.
        """
        return await self._append(batch, None, transient=True)

    async def _append(
        self,
        batch: Sequence[PendingEvent],
        idempotency_keys: Sequence[str | None] | None,
        *,
        transient: bool,
    ) -> list[StoredEvent]:
        script = self._publish_script
        if script is None:
            raise BrokerClosed("the Redis backend is not started")
        if not batch:
            return []
        _redis_budget.check_batch(self.budget, batch)
        topic_index: dict[str, int] = {}
        for topics, _, _ in () if transient else batch:
            for topic in topics:
                topic_index.setdefault(topic, len(topic_index) + 1)
        head: list[str | int] = [
            self.log_size,
            self.history_size,
            self._ttl_ms,
            self._now_ms(),
            secrets.token_hex(4),  # becomes the epoch if this is the data set's first publish
            _EXPIRE_BATCH + len(topic_index),
            len(topic_index),
            *topic_index,
        ]
        args = publish_arguments(batch, idempotency_keys, head, topic_index)
        keys = [*self._keys, *(self._topic_key(t) for t in topic_index), *self._idempotency_keys]
        keys += self._budget_keys
        args += _redis_budget.budget_arguments(self.budget)
        with attempt() as sending:
            try:
                raw_epoch, candidates, *raw_ids = await script(keys=keys, args=args)
            except self._redis.RedisError as exc:
                self._commands_ok = False
                raise publish_error(exc, sending.sent) from exc
        self._commands_ok = True
        if candidates:
            try:
                await self._expire(candidates)
            except self._redis.RedisError as exc:
                # The events are stored: the publish succeeded. Removal is retried lazily.
                logger.warning("could not remove aged-out topics (will retry): %s", exc)
        stored = stored_events(text(raw_epoch), raw_ids, batch, self._timestamp)
        await self._reader.delivered(stored[-1].position)
        return stored

    _expire = _redis_budget.expire

    # -- replay ----------------------------------------------------------------------------------

    async def replay(self, topics: Collection[str], last_event_id: str) -> Replay:
        """Return the retained events after ``last_event_id`` on ``topics``, merged by id.

        One script reads everything at one instant: at most ``history_size`` entries per topic,
        plus O(1) bookkeeping, so the cost is bounded whatever Redis holds. An event published to
        several of the topics is returned once.

        Concurrent identical requests (same topics, same id, nothing delivered by this process
        in between) share one read: when a hub process goes away, all its clients reconnect at
        once, mostly with the same last id, and one read (and one decoding, and one encoding of
        each event) then serves all of them.

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        # Only requests that registered with nothing delivered in between share a read: the
        # reader's last id is part of the key. A request joining a read that Redis already
        # answered would otherwise miss an event published after that snapshot and delivered
        # here before the request's subscription was registered (in neither its replay nor
        # its live queue).
        return await self._shared_replay(topics, last_event_id, tip=self._reader.last_id)

    async def _replay(self, topics: Collection[str], last_event_id: str) -> Replay:
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            return Replay(reset=ResetReason.UNKNOWN)
        epoch, position = parsed
        script = self._replay_script
        if script is None:
            raise BrokerClosed("the Redis backend is not started")
        names = list(topics)
        after = f"{position[0]}-{position[1]}"
        keys = [self._keys[1], self._keys[2], *(self._topic_key(t) for t in names)]
        args: list[str | int] = [after, self._ttl_ms, self.history_size, self._now_ms(), *names]
        try:
            raw = await script(keys=keys, args=args)
        except self._redis.RedisError as exc:
            self._commands_ok = False
            raise _unavailable("replay", exc) from exc
        self._commands_ok = True
        return replay_from_snapshot(raw, epoch, position, self._timestamp)

    async def history_sizes(self, topics: Collection[str] | None = None) -> dict[str, int]:
        """Return how many events each topic retains (every topic that retains one when ``None``).

        Listing every topic also removes a few that aged out entirely (as a publish does).

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        client, script, list_script = self._client, self._sizes_script, self._list_script
        if client is None or script is None or list_script is None:
            raise BrokerClosed("the Redis backend is not started")
        try:
            if topics is None:
                live, legacy, candidates = await list_script(
                    keys=self._keys[3:5], args=[self._ttl_ms, self._now_ms(), _EXPIRE_BATCH]
                )
                if candidates:
                    await self._expire(candidates)
                names = sorted({text(name) for name in (*live, *legacy)})
            else:
                names = list(topics)
            if not names:
                return {}
            keys = [self._topic_key(t) for t in names]
            sizes = await script(keys=keys, args=[self._ttl_ms, self._now_ms()])
        except self._redis.RedisError as exc:
            self._commands_ok = False
            raise _unavailable("history sizes", exc) from exc
        self._commands_ok = True
        counts = {name: int(size) for name, size in zip(names, sizes, strict=True)}
        if topics is None:  # like the memory backend: topics whose history aged out are gone
            return {name: size for name, size in counts.items() if size > 0}
        return counts

    history_usage = _redis_budget.history_usage
    replay_matching = _redis_patterns.replay_matching
    _topics_at_tip = _redis_patterns.topics_at_tip

    async def forget(self, topics: Collection[str]) -> None:
        """Drop the history of ``topics``: their streams, trim marks and names (one script).

        The global ``forgotten`` watermark is not raised (see
        :meth:`ssehub.broker.history.History.forget`).

        The global log keeps its entries: it is what readers catch up from, bounded by
        ``log_size``, and replay never reads it.

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        client, script = self._client, self._forget_script
        if client is None or script is None:
            raise BrokerClosed("the Redis backend is not started")
        names = list(topics)
        if not names:
            return
        keys = [*self._keys[2:5], *self._budget_keys, *(self._topic_key(t) for t in names)]
        try:
            await script(keys=keys, args=names)
        except self._redis.RedisError as exc:
            self._commands_ok = False
            raise _unavailable("forget", exc) from exc
        self._commands_ok = True

    # -- the end of the log (read at start, and by the reader after a reconnect) -----------------

    async def _tail(self) -> tuple[str | None, str | None, str | None]:
        """Read ``(epoch, newest id, newest id trimmed from the log)``, each ``None`` if unset.

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        script = self._tail_script
        assert script is not None
        try:
            epoch, last, gone = await script(keys=self._keys[1:3], args=[])
        except self._redis.RedisError as exc:
            raise _unavailable("read the log", exc) from exc
        return (
            None if epoch is None else text(epoch),
            None if last is None else text(last),
            None if gone is None else text(gone),
        )
