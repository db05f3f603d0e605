"""The broker: topics, bounded subscribers, history through a backend, exact resume.

``async with Broker() as broker:`` starts the backend and the broker's single background task
(the deadline task, which ends subscriptions at ``max_connection_age`` or ``expires_at``)
in one task group; leaving the block ends every subscription cleanly and stops everything.

The broker's registry, fan-out and deadlines hold each subscription's state, never the
:class:`Subscription` handle the consumer holds, so a handle dropped without closing is garbage
collected and its state released (``_release.py``).
"""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from .._clock import Clock, SystemClock
from .._deadlines import Deadlines
from .._exceptions import BrokerClosed, ConfigurationError
from .._excgroups import exit_task_group
from .._waiter import Waiter, waiter_factory
from ..backends.base import Backend, Replay, history_bytes, history_usage, replay_matching
from ..backends.factory import create_backend
from ._fanout import DEFAULT_MATCH_CACHE_SIZE, Fanout
from ._release import Releaser
from ._state import EndReason, SubscriptionState
from .events import ResetReason, StoredEvent
from .history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL, HistoryBudget
from .ids import is_valid_event_id
from .lifetime import Lifetimes
from .patterns import DEFAULT_MAX_PATTERNS, TopicMatcher, split_topics
from .policy import OverflowPolicy
from .publication import Publication, key_list, prepare_batch, prepare_publication, store
from .stats import BrokerStatistics, TopicInfo
from .subscription import Subscription

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_MAX_PATTERNS",
    "DEFAULT_MAX_TOPICS",
    "DEFAULT_QUEUE_SIZE",
    "Broker",
    "Publication",
]

logger = logging.getLogger("ssehub.broker")

DEFAULT_QUEUE_SIZE: Final = 500
"""Half the default history: the ``disconnect`` policy sheds a subscriber once this many events
wait for it, so it is then about this far behind and can still resume from a history twice as
long (a queue as long as the history would shed it just as its resume point leaves history)."""

DEFAULT_MAX_TOPICS: Final = 32
"""Topics per subscription or publication: 32 topics of the 256-character maximum fill an 8 KiB
URL, the default request-line limit of nginx and many proxies."""

DEFAULT_MAX_AGE_JITTER: Final = 0.2
"""Deadlines spread over the last 20% of ``max_connection_age``, so a fleet of clients that
connected together (after a deploy) does not reconnect together."""

Hook = Callable[[Subscription], object]
T = TypeVar("T")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Broker:
    """Publish events to topics; subscribe with exact ``Last-Event-ID`` resume.

    Args:
        backend: ``"memory://"`` (default), a URL of another backend (``redis://...``), or a
            :class:`~ssehub.backends.Backend` instance (configure its history on it).
        history_size: events kept per topic (default 1000; see ``DEFAULT_HISTORY_SIZE``).
        history_ttl: seconds events are kept (default 3600; see ``DEFAULT_HISTORY_TTL``).
        budget: the largest event and history's byte and topic bounds (``HistoryBudget()``).
        queue_size: events queued per subscriber before the overflow policy applies (500).
        overflow: ``"disconnect"`` (default), ``"drop_oldest"`` or ``"block"``, or an
            :class:`OverflowPolicy`.
        max_connection_age: seconds after which a subscription ends (``None``: never).
        max_connection_age_jitter: fraction of ``max_connection_age`` by which a deadline may
            come early, uniformly (0.2).
        max_topics_per_subscription: topics per subscribe/publish call (32); a
            subscription's patterns count too.
        max_patterns_per_subscription: patterns (``*`` topics, :class:`TopicMatcher`
            objects) per subscription (8; see ``DEFAULT_MAX_PATTERNS``).
        match_cache_size: event topics whose matching patterns are remembered (10 000, LRU;
            see ``broker/_fanout.py``).
        clock: the clock for history age and connection age (``SystemClock()``).
        rng: random source for the jitter (a seeded ``random.Random`` in tests).
        on_subscribe: called with each new subscription (sync; exceptions are logged).
        on_unsubscribe: called with each ended subscription (sync; exceptions are logged). For
            one garbage collected unclosed (``EndReason.ABANDONED``) it is called soon after,
            from a callback on the broker's event loop thread (not inside a task), with another
            ``Subscription`` object on the same ended subscription (the original is gone).

    Raises:
        ConfigurationError: an option is out of range, the URL scheme is unknown, or history
            options are given together with a backend instance.
    """

    def __init__(
        self,
        backend: str | Backend = "memory://",
        *,
        history_size: int | None = None,
        history_ttl: float | None = None,
        budget: HistoryBudget | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        overflow: OverflowPolicy | str = OverflowPolicy.DISCONNECT,
        max_connection_age: float | None = None,
        max_connection_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
        max_topics_per_subscription: int = DEFAULT_MAX_TOPICS,
        max_patterns_per_subscription: int = DEFAULT_MAX_PATTERNS,
        match_cache_size: int = DEFAULT_MATCH_CACHE_SIZE,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_subscribe: Hook | None = None,
        on_unsubscribe: Hook | None = None,
    ) -> None:
        if isinstance(backend, str):
            backend = create_backend(
                backend,
                history_size=DEFAULT_HISTORY_SIZE if history_size is None else history_size,
                history_ttl=DEFAULT_HISTORY_TTL if history_ttl is None else history_ttl,
                budget=budget,
            )
        elif (history_size, history_ttl, budget) != (None, None, None):
            raise ConfigurationError(
                "history options (size, ttl, budget) apply to backend URLs; configure the instance"
            )
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigurationError("queue_size must be an int >= 1")
        if max_connection_age is not None and not max_connection_age > 0:
            raise ConfigurationError("max_connection_age must be > 0 seconds (or None)")
        if not 0 <= max_connection_age_jitter < 1:
            raise ConfigurationError("max_connection_age_jitter must be in [0, 1)")
        if max_topics_per_subscription < 1:
            raise ConfigurationError("max_topics_per_subscription must be >= 1")
        if max_patterns_per_subscription < 0:
            raise ConfigurationError("max_patterns_per_subscription must be >= 0")
        if match_cache_size < 1:
            raise ConfigurationError("match_cache_size must be >= 1")
        self.backend: Backend = backend
        self.queue_size = queue_size
        self.overflow = OverflowPolicy.parse(overflow)
        self.max_connection_age = max_connection_age
        self.max_topics = max_topics_per_subscription
        self.max_patterns = max_patterns_per_subscription
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._on_subscribe = on_subscribe
        self._on_unsubscribe = on_unsubscribe
        self._deadlines = Deadlines(self.clock)
        self._lifetimes = Lifetimes(
            self.clock, self._deadlines, max_connection_age, max_connection_age_jitter, rng
        )
        self._state = _State.NEW
        # Subscription states only: the handles must stay collectable (see _release.py).
        self._fanout = Fanout(match_cache_size)
        self._subscribers = self._fanout.exact  # exact topic -> its subscribers
        self._subscriptions: dict[SubscriptionState, None] = {}
        self._releaser = Releaser()
        self._task_group: TaskGroup | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        # Makes the one-shot events subscriptions wait on, chosen once when the broker starts
        # (see _waiter.py): a bare future on asyncio, anyio's Event class otherwise.
        self._new_event: Callable[[], Waiter] = anyio.Event
        self._loop_thread: int | None = None
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._shed = 0
        self._replays = 0
        self._resets = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Broker:
        if self._state is not _State.NEW:
            raise BrokerClosed("a Broker can be entered only once")
        self._token = anyio.lowlevel.current_token()
        self._new_event = waiter_factory(self._token)
        self._loop_thread = threading.get_ident()
        self._releaser.start(self._token)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await self.backend.start(
                sink=self._fanout.deliver, clock=self.clock, task_group=task_group
            )
            task_group.start_soon(self._deadlines.run, name="ssehub broker: deadlines")
        except BaseException as exc:
            self._state = _State.CLOSED
            task_group.cancel_scope.cancel()
            await self._exit_task_group(task_group, type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._state = _State.CLOSED
        self._releaser.release()  # those abandoned already end as such
        for state in list(self._subscriptions):
            state._end(EndReason.BROKER_CLOSED)
        task_group = self._task_group
        self._task_group = None
        try:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                return await self._exit_task_group(task_group, exc_type, exc, tb)
            return None
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.aclose()

    # Leaving a task group with a lone error as itself (the channel classes use it too).
    _exit_task_group = staticmethod(exit_task_group)

    @property
    def running(self) -> bool:
        """Whether the broker is inside its ``async with`` block."""
        return self._state is _State.RUNNING

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING:
            raise BrokerClosed(
                "the broker is not running (use it inside `async with Broker(...)`)"
                if self._state is _State.NEW
                else "the broker has shut down"
            )

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        topics: str | Iterable[str],
        data: Any,
        *,
        event: str | None = None,
        retry: int | None = None,
        private: bool = False,
        idempotency_key: str | None = None,
    ) -> StoredEvent:
        """Publish one event to one or more topics.

        Args:
            topics: a topic or several (an event on several topics reaches a subscriber of
                more than one of them once).
            data: ``str`` (verbatim; multi-line allowed), any other JSON value (compact JSON
                text), or a :class:`~ssehub.ServerSentEvent` (its ``id`` is replaced).
            event: the event type (``event:`` field); ``ssehub.*`` is reserved.
            retry: the clients' reconnection time in milliseconds.
            private: mark the stored event private (kept with it in history, so also on
                replay). The broker still delivers it to every subscription; consumers that
                know who is listening (the hub) deliver it only to authorized subscribers.
            idempotency_key: names this publication (1-255 visible ASCII characters): while
                the backend remembers it (at least while the event is in history), a publish
                with it stores nothing and returns the first publication's event.

        Returns:
            The stored event, with its id.

        Raises:
            BrokerClosed: the broker is not running.
            InvalidTopic: a topic is invalid, or there are too many.
            EventValidationError: ``data``, ``event`` or ``retry`` is invalid.
            InvalidIdempotencyKey, IdempotencyKeyReused: the key is invalid, or names another
                publication (nothing was published).
            BackendUnavailable: the backend cannot store it (nothing was published).
            PublishOutcomeUnknown: sent, not answered: maybe stored; retry with the same key.
        """
        self._check_running()
        pending = prepare_publication(
            topics, data, event, retry, private, max_topics=self.max_topics
        )
        keys = key_list(idempotency_key)
        await self._ready_to_store(pending[0])
        stored = await store(self.backend, (pending,), keys)
        self._published += 1
        return stored[0]

    async def publish_many(self, items: Iterable[Publication]) -> list[StoredEvent]:
        """Validate every item, then publish them all in order (all or nothing).

        Args:
            items: :class:`Publication` values.

        Returns:
            The stored events, in order.

        Raises:
            Same as :meth:`publish`; when one item is invalid nothing is published.
        """
        self._check_running()
        batch, keys = prepare_batch(items, max_topics=self.max_topics)
        if not batch:
            return []
        await self._ready_to_store(tuple({t: None for names, _, _ in batch for t in names}))
        stored = await store(self.backend, batch, keys)
        self._published += len(stored)
        return stored

    def publish_threadsafe(
        self,
        topics: str | Iterable[str],
        data: Any,
        *,
        event: str | None = None,
        retry: int | None = None,
        private: bool = False,
        idempotency_key: str | None = None,
    ) -> StoredEvent:
        """:meth:`publish` from a thread that is not the broker's event loop thread.

        Blocks the calling thread until the event is published (with the ``block`` policy,
        until there is room).

        Raises:
            BrokerClosed: the broker is not running.
            RuntimeError: called from the broker's own event loop thread (use ``await
                publish``).
            Others as :meth:`publish`.
        """
        publish = partial(self.publish, event=event, retry=retry, private=private)
        return self._run_from_thread(
            partial(publish, topics, data, idempotency_key=idempotency_key)
        )

    def publish_many_threadsafe(self, items: Iterable[Publication]) -> list[StoredEvent]:
        """:meth:`publish_many` from a non-event-loop thread (see :meth:`publish_threadsafe`)."""
        return self._run_from_thread(partial(self.publish_many, list(items)))

    def _run_from_thread(self, func: Callable[[], Coroutine[Any, Any, T]]) -> T:
        token = self._token
        if token is None or self._state is not _State.RUNNING:
            self._check_running()
        if threading.get_ident() == self._loop_thread:
            # anyio would wait forever for the loop this very thread is blocking.
            raise RuntimeError(
                "publish_threadsafe() called from the event loop thread; use publish"
            )
        try:
            return anyio.from_thread.run(func, token=token)
        except anyio.RunFinishedError as exc:
            raise BrokerClosed("the broker's event loop has finished") from exc

    async def _ready_to_store(self, topics: Sequence[str]) -> None:
        """Wait until a publication to ``topics`` may be stored; then store it at once.

        The one checkpoint of a publish (not one per subscriber) comes first, and nothing after
        the store (trio's rule: a call that raised Cancelled did nothing), so a caller never
        retries a publish that was stored; it also lets consumers run between the publishes of
        a tight loop. Then, with the ``block`` policy, room: no checkpoint between the last
        check and the store, or every publisher waiting for room would store at once. Then the
        broker must still be running.

        Raises:
            BrokerClosed: the broker stopped meanwhile.
        """
        await anyio.lowlevel.checkpoint()
        if self.overflow is OverflowPolicy.BLOCK:
            await self._wait_for_room(topics)
        self._check_running()

    async def _wait_for_room(self, topics: Sequence[str]) -> None:
        """``block`` policy: wait until every subscriber of ``topics`` has room in its queue."""
        while True:
            for subscription in self._fanout.receivers(topics):
                if not subscription._has_room():
                    await subscription._wait_for_room()
                    break  # waited: the set of subscribers may have changed, check again
            else:
                return

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(
        self,
        topics: str | Iterable[str | TopicMatcher],
        last_event_id: str | None = None,
        *,
        visible: Callable[[StoredEvent], bool] | None = None,
        expires_at: float | None = None,
    ) -> Subscription:
        """Register a subscription now; events published after this call reach it.

        Args:
            topics: a topic or several. A ``str`` containing ``*`` is a pattern
                (:class:`~ssehub.broker.TopicPattern`: ``orders/*`` receives the events of
                ``orders/1``, ``orders/1/items``..., topics created later included); a
                :class:`~ssehub.broker.TopicMatcher` object is used as is. An event reaching
                the subscription through several topics or patterns is delivered once.
            last_event_id: the client's ``Last-Event-ID`` (``None``/``""``: start live). Every
                retained event after it on any of the topics, or on any topic a pattern
                matches, is delivered first, in order, once each, then live events, with no gap
                or duplicate (a backend without ``replay_matching`` cannot resume patterns: see
                :func:`ssehub.backends.replay_matching`). If it cannot be resumed
                (malformed, unknown, expired), the first item is a :class:`Reset` notice and the
                stream continues live. The value is never echoed.
            visible: who reads it may see a private event only if this returns true for it
                (the hub passes the reader's grants). Hidden events are never queued,
                replayed or counted in ``Dropped`` notices. ``None``: every event is visible.
            expires_at: a time on the broker's :attr:`clock` at which the subscription ends
                (``EndReason.EXPIRED``; the hub passes the expiry of the stream's credential),
                or ``None``. What is queued then is still delivered.

        Returns:
            The subscription. Close it when done (``async with``, ``close()``, or the
            ``EventSourceResponse`` streaming it); dropped unclosed, it is released once it is
            garbage collected (``EndReason.ABANDONED``).

        Raises:
            BrokerClosed: the broker is not running.
            InvalidTopic: a topic or pattern is invalid, or there are more topics and
                patterns than ``max_topics_per_subscription`` or more patterns than
                ``max_patterns_per_subscription``.
            ConfigurationError: ``expires_at`` is NaN.
        """
        self._check_running()
        if expires_at is not None and math.isnan(expires_at):
            raise ConfigurationError("expires_at must be a time on the broker's clock, not NaN")
        names, patterns = split_topics(
            topics, limit=self.max_topics, max_patterns=self.max_patterns
        )
        resume_id: str | None = None
        reset: ResetReason | None = None
        if last_event_id is not None and last_event_id != "":
            if is_valid_event_id(last_event_id):
                resume_id = last_event_id
            else:
                reset = ResetReason.MALFORMED
                self._resets += 1
        subscription = Subscription(
            self,
            names,
            patterns,
            maxsize=self.queue_size,
            policy=self.overflow,
            resume_id=resume_id,
            reset=reset,
            visible=visible,
        )
        state = subscription._state
        self._fanout.add(state)
        self._subscriptions[state] = None
        self._lifetimes.start(state, expires_at)
        self._call_hook(self._on_subscribe, state)
        return subscription

    def _unregister(self, state: SubscriptionState) -> None:
        """Called once by ``SubscriptionState._end``."""
        if state not in self._subscriptions:
            return
        del self._subscriptions[state]
        self._fanout.remove(state)
        if state._end_reason is EndReason.SHED:
            self._shed += 1
        self._lifetimes.end(state)
        self._call_hook(self._on_unsubscribe, state)

    def _call_hook(self, hook: Hook | None, state: SubscriptionState) -> None:
        if hook is None:
            return
        try:
            hook(Subscription._of(state))
        except Exception:
            # A hook is user code: its failure must not break publishing or other streams.
            logger.exception("ssehub broker hook %r failed", hook)

    async def _backend_replay(
        self, topics: Collection[str], patterns: Sequence[TopicMatcher], last_event_id: str
    ) -> Replay:
        if patterns:
            replay = await replay_matching(self.backend, topics, patterns, last_event_id)
        else:
            replay = await self.backend.replay(topics, last_event_id)
        if replay.reset is None:
            self._replays += 1
        else:
            self._resets += 1
        return replay

    # -- presence and statistics -------------------------------------------------------------

    def subscriber_count(self, topics: str | Iterable[str] | None = None) -> int:
        """Return how many open subscriptions (in this process) would receive an event.

        Args:
            topics: the event's topic, or its topics (a subscriber of two of them, or whose
                pattern matches too, counts once), or ``None`` for all subscriptions.
                Subscribers whose pattern matches a topic count for it.
        """
        if topics is None:
            return len(self._subscriptions)
        if isinstance(topics, str):
            if not self._fanout.groups:
                return len(self._subscribers.get(topics, ()))
            topics = (topics,)
        return self._fanout.count(topics)

    def patterns(self) -> dict[str, int]:
        """Return the pattern subscriptions (in this process): subscribers per matcher key.

        Keys are :attr:`TopicMatcher.key` (``glob:orders/*``). Pattern subscribers are not
        listed under topics by :meth:`topics` (a pattern has no topic of its own); they count
        in :meth:`subscriber_count` for each topic their pattern matches.
        """
        return {key: len(group.states) for key, group in self._fanout.groups.items()}

    async def topics(self) -> list[TopicInfo]:
        """Return every topic with exact subscribers or history: exact subscribers, history
        events, events fanned out here, bytes (pattern subscribers: :meth:`patterns`).

        Raises:
            BackendUnavailable: the backend cannot be reached.
        """
        usage = await history_usage(self.backend)
        names = sorted(set(usage) | set(self._subscribers))
        return [
            TopicInfo(
                name,
                len(self._subscribers.get(name, ())),
                usage.get(name, (0, 0))[0],
                self._fanout.topic_events.get(name, 0),
                usage.get(name, (0, 0))[1],
            )
            for name in names
        ]

    def statistics(self) -> BrokerStatistics:
        """Return ``(topics, subscribers, published, delivered, dropped, shed, replays,
        resets, history_bytes)``."""
        return BrokerStatistics(
            len(self._subscribers),
            len(self._subscriptions),
            self._published,
            self._delivered,
            self._dropped,
            self._shed,
            self._replays,
            self._resets,
            history_bytes(self.backend),
        )

    def __repr__(self) -> str:
        return (
            f"<Broker {self._state.value} subscribers={len(self._subscriptions)}"
            f" topics={len(self._subscribers)}>"
        )
