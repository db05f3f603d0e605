"""A channel: named listeners, broadcast to all of them or dispatch to one.

Each channel runs its own in-memory :class:`~ssehub.Broker` and reuses everything it has: a
listener is a subscription to two topics of that broker, ``all`` (broadcasts) and its private
topic ``to/<listener id>/<n>`` (messages dispatched to it; ``n`` counts registrations, so a new
listener that takes a removed one's id never shares its topic). So listener queues are bounded
with the same overflow policies as hub subscriptions, messages get broker ids, and
``Last-Event-ID`` resume replays history exactly. A broadcast is published (and encoded) once,
whatever the number of listeners.

A listener replays only what was addressed to it: it records the newest id when it joins, and
a resume from an older id starts there instead (broadcasts before it joined were never checked
by its hook). Removing a listener forgets its private topic's history at once.

Byte budgets (:class:`~ssehub.broker.history.HistoryBudget`): the largest message, the history
per topic and in all (a registry's channels also share one :class:`HistoryPool` of the total),
and the messages queued per listener, bounded in bytes by ``budget.history_bytes`` besides
``queue_size``: a message that would take a listener over it first drops the listener's queue,
which catches up from history when it next reads (a reset message first if it fell behind
further than history holds; under ``block``, senders wait instead), so a listener that does not
read pins at most that much of what history has already let go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from .._exceptions import AlreadyExists, LimitReached, ListenerBusy, NoMessages, UnknownListener
from ..backends.memory import MemoryBackend
from ..broker.broker import DEFAULT_QUEUE_SIZE, Broker
from ..broker.history import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    EVENT_OVERHEAD,
    HistoryBudget,
    HistoryPool,
    event_cost,
)
from ..broker.policy import OverflowPolicy
from ._listener import Listener, ListenerState, MessageHook, MessageStream, check_name, run_hook
from ._message import Message

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from .._clock import Clock
    from ..broker.events import StoredEvent
    from ..broker.subscription import Subscription
    from ..wire import ServerSentEvent

__all__ = ["DEFAULT_MAX_LISTENERS", "Channel", "ChannelStatistics"]

DEFAULT_MAX_LISTENERS: Final = 10_000
"""Listeners per channel: a bound so a client creating listeners in a loop cannot exhaust memory
(each costs a subscription and a queue); well above one hub process's practical fan-out."""

_BROADCAST_TOPIC: Final = "all"
_LISTENER_TOPIC: Final = "to/"  # listener ids contain no "/", so no id can collide with "all"


class ChannelStatistics(NamedTuple):
    """A channel's counters.

    Attributes:
        listeners: registered listeners now.
        published: messages broadcast or dispatched (each counts once).
        delivered: messages handed to listeners' consumers.
        dropped: messages dropped by ``drop_oldest`` or discarded when a listener was shed.
        shed: times a listener fell behind under ``disconnect`` (it then resumed from history).
    """

    listeners: int
    published: int
    delivered: int
    dropped: int
    shed: int


class Channel:
    """Listeners addressed by id: ``broadcast`` to all, ``dispatch`` to one.

    Use it as ``async with Channel("jobs") as channel:`` (that runs its broker), or create it
    in a :class:`~ssehub.ChannelRegistry`.

    Args:
        name: 1-64 characters of ``A-Z a-z 0-9 _ . -``, not ``.`` or ``..``.
        queue_size: messages queued per listener before the overflow policy applies.
        overflow: ``"disconnect"`` (default: a listener that falls behind drops its queue and
            catches up from history), ``"drop_oldest"`` (an ``ssehub.dropped`` message marks
            the gap) or ``"block"`` (senders wait for room: back-pressure for worker pools).
        history_size: messages kept per topic (the broadcast topic, each listener's topic) for
            resume.
        history_ttl: seconds messages are kept for resume.
        max_listeners: listeners at most (10 000).
        clock: the broker clock (history age); tests pass a ``ManualClock``.
        budget: the largest message, the bytes of history per topic and in all, and (its
            ``history_bytes``) the bytes queued per listener (``HistoryBudget()`` by default).
        pool: a byte budget of history shared with other channels (a registry's).

    Raises:
        ConfigurationError: the name or an option is invalid.
    """

    def __init__(
        self,
        name: str,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        overflow: OverflowPolicy | str = OverflowPolicy.DISCONNECT,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        max_listeners: int = DEFAULT_MAX_LISTENERS,
        clock: Clock | None = None,
        budget: HistoryBudget | None = None,
        pool: HistoryPool | None = None,
    ) -> None:
        self.name = check_name("channel name", name)
        self.max_listeners = max_listeners
        # Kept typed: removing a listener forgets its topic synchronously (forget_now), and a
        # joining listener reads the newest id (last_id); both are memory-backend operations.
        self._backend = MemoryBackend(
            history_size=history_size, history_ttl=history_ttl, budget=budget, pool=pool
        )
        self.budget = self._backend.budget
        self._broker = Broker(self._backend, queue_size=queue_size, overflow=overflow, clock=clock)
        self._listeners: dict[str, Listener] = {}
        self._registrations = 0  # numbers the private topics: never reused within the channel

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} listeners={len(self._listeners)}>"

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Channel:
        await self._broker.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        listeners = list(self._listeners.values())
        self._listeners.clear()
        for listener in listeners:
            listener._detach()  # their streams deliver what is queued, then end
        try:
            return await self._broker.__aexit__(exc_type, exc, tb)
        finally:
            # Release the history, so a shared pool stops counting it.
            self._backend.forget_now(list(await self._backend.history_sizes()))

    @property
    def running(self) -> bool:
        """Whether the channel is inside its ``async with`` block."""
        return self._broker.running

    @property
    def overflow(self) -> OverflowPolicy:
        """The listeners' overflow policy."""
        return self._broker.overflow

    @property
    def queue_size(self) -> int:
        """Messages queued per listener before the overflow policy applies."""
        return self._broker.queue_size

    def statistics(self) -> ChannelStatistics:
        """Return ``(listeners, published, delivered, dropped, shed)``."""
        stats = self._broker.statistics()
        return ChannelStatistics(
            len(self._listeners), stats.published, stats.delivered, stats.dropped, stats.shed
        )

    def _subscribe(self, listener: Listener, last_event_id: str | None) -> Subscription:
        """Subscribe ``listener`` to its topics, resuming after ``last_event_id`` (``None``: live).

        An id of this channel older than the listener's join point resumes from the join point:
        what was published before the listener existed (broadcasts its hook never saw, private
        messages of an earlier listener with its id) is not its to replay. Other ids (unknown,
        malformed) go to the broker as they are, which answers them with a reset.
        """
        resume = last_event_id or None
        if resume is not None:
            backend = self._backend
            requested = backend.parse_id(resume)
            joined = backend.parse_id(listener._floor)
            if requested is not None and joined is not None and requested < joined:
                resume = listener._floor
        return self._broker.subscribe((_BROADCAST_TOPIC, listener._topic), resume)

    def _enrol(self, listener_id: str) -> tuple[str, str]:
        """Return a new listener's private topic and join point (the newest id now)."""
        self._registrations += 1
        return f"{_LISTENER_TOPIC}{listener_id}/{self._registrations}", self._backend.last_id

    # -- listeners ------------------------------------------------------------------------------

    def add_listener(
        self,
        id: str | None = None,
        *,
        on_message: MessageHook | None = None,
    ) -> Listener:
        """Create, register and start a listener.

        Args:
            id: its id (random by default).
            on_message: its validation hook (see :class:`Listener`).

        Returns:
            The running listener.

        Raises:
            Same as :meth:`register_listener`.
        """
        return self.register_listener(Listener(id, on_message=on_message))

    def register_listener(self, listener: Listener) -> Listener:
        """Register and start ``listener``: messages sent from now on are queued for it.

        Returns:
            ``listener``.

        Raises:
            BrokerClosed: the channel is not running.
            AlreadyExists: a listener with its id is registered.
            LimitReached: the channel has ``max_listeners`` listeners.
            ConfigurationError: the listener is (or was) registered with a channel.
        """
        if listener.id in self._listeners:
            raise AlreadyExists("listener", listener.id)
        if len(self._listeners) >= self.max_listeners:
            raise LimitReached(
                f"channel {self.name!r} has its maximum of {self.max_listeners} listeners",
                self.max_listeners,
            )
        listener._attach(self, *self._enrol(listener.id))
        self._listeners[listener.id] = listener
        return listener

    def get_listener(self, listener_id: str) -> Listener:
        """Return the registered listener with this id.

        Raises:
            UnknownListener: there is none.
        """
        listener = self._listeners.get(listener_id)
        if listener is None:
            raise UnknownListener(listener_id)
        return listener

    def remove_listener(self, listener_id: str) -> None:
        """Remove a listener: its queue is freed after what is pending, its stream ends.

        Its private history is forgotten at once: nobody may replay it (a new listener with the
        same id has a topic of its own), and it would otherwise stay in memory for
        ``history_ttl``.

        Raises:
            UnknownListener: there is none with this id.
        """
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            raise UnknownListener(listener_id)
        listener._detach()
        self._backend.forget_now((listener._topic,))

    def listener_ids(self) -> list[str]:
        """Return the ids of the registered listeners, in registration order."""
        return list(self._listeners)

    def __len__(self) -> int:
        return len(self._listeners)

    def __contains__(self, listener_id: object) -> bool:
        return listener_id in self._listeners

    # -- sending --------------------------------------------------------------------------------

    async def broadcast(self, message: Message) -> str | None:
        """Queue ``message`` for every listener (stopped ones catch up when restarted).

        Every listener's ``on_message`` hook runs first; if one refuses, nobody receives it.
        The end-of-stream message stops every listener instead.

        Returns:
            The message id, or ``None`` for the end-of-stream message.

        Raises:
            MessageRejected: a hook refused it (or another exception a hook raised).
            EventValidationError: a reserved type, or a payload that is not JSON.
            EventTooLarge: the message is larger than ``budget.max_event_size`` encoded.
            BrokerClosed: the channel is not running.
        """
        if message.is_end:
            for listener in list(self._listeners.values()):
                listener.stop()
            return None
        event = message.to_event()
        checked: set[Listener] = set()
        while True:
            # Hooks may await; listeners registered meanwhile are checked too, so no listener
            # receives a message its hook has not accepted.
            pending = [item for item in self._listeners.values() if item not in checked]
            if not pending:
                break
            for listener in pending:
                checked.add(listener)
                if listener.on_message is not None:
                    await run_hook(listener.on_message, message)
        self.budget.check_event(event)  # before making room: it could never fit
        receivers = [item for item in self._listeners.values() if item._receiving]
        await self._make_room(receivers, event)
        stored = await self._broker.publish(_BROADCAST_TOPIC, event)
        self._queued(receivers, stored)
        return stored.id

    async def dispatch(self, listener_id: str, message: Message) -> str | None:
        """Queue ``message`` for one listener (a stopped one catches up when restarted).

        The end-of-stream message stops that listener after what is already queued.

        Returns:
            The message id, or ``None`` for the end-of-stream message.

        Raises:
            UnknownListener: no listener has this id (or it was removed by its hook's await).
            MessageRejected: its hook refused it.
            EventValidationError: a reserved type, or a payload that is not JSON.
            EventTooLarge: the message is larger than ``budget.max_event_size`` encoded.
            BrokerClosed: the channel is not running.
        """
        listener = self.get_listener(listener_id)
        if message.is_end:
            listener.stop()
            return None
        event = message.to_event()
        if listener.on_message is not None:
            await run_hook(listener.on_message, message)
            if self._listeners.get(listener_id) is not listener:
                raise UnknownListener(listener_id)
        self.budget.check_event(event)
        await self._make_room((listener,), event)
        stored = await self._broker.publish(listener._topic, event)
        if self._listeners.get(listener_id) is not listener:
            # Removed while the publish waited for room (``block`` policy): the message reached
            # nobody (the topic is this incarnation's own), and must not stay in history.
            self._backend.forget_now((listener._topic,))
            raise UnknownListener(listener_id)
        self._queued((listener,), stored)
        return stored.id

    # -- the listeners' queues in bytes ---------------------------------------------------------

    async def _make_room(self, listeners: Sequence[Listener], event: ServerSentEvent) -> None:
        """Before sending ``event``: a listener whose queue it would take over its budget drops
        that queue and will catch up from history; under ``block`` the sender waits instead.

        A listener with nothing queued takes any message. Done before publishing, so the new
        message reaches the caught-up subscription live, even when the listener fell behind
        further than history holds (then it reads a reset message first, like a shed client).
        """
        limit = self.budget.history_bytes
        # What the stored event will cost (its id and timestamp are not known yet).
        cost = 2 * len(event.encode()) + EVENT_OVERHEAD  # as event_cost, less its topics
        block = self.overflow is OverflowPolicy.BLOCK
        for listener in listeners:
            queued = listener._queued_bytes
            while listener._receiving and queued and queued + cost > limit:
                if not block:
                    listener._catch_up()
                    break
                await listener._wait_for_bytes()
                queued = listener._queued_bytes

    @staticmethod
    def _queued(listeners: Sequence[Listener], stored: StoredEvent) -> None:
        """Count ``stored`` as queued for those of ``listeners`` that receive it."""
        cost = event_cost(stored)
        for listener in listeners:
            if listener._receiving:
                listener._queued_bytes += cost

    # -- receiving ------------------------------------------------------------------------------

    async def deliver_next(self, listener_id: str) -> Message:
        """Return the listener's next message without waiting.

        Returns:
            The message (with its ``id``); the end-of-stream message once the listener has
            stopped and everything queued was delivered (every later call returns it again).

        Raises:
            UnknownListener: no listener has this id.
            NoMessages: nothing is waiting for it now.
            ListenerBusy: a message stream is consuming this listener.
        """
        listener = self.get_listener(listener_id)
        if listener._consumed:
            raise ListenerBusy(listener_id)
        message = await listener._next_message()
        if message is None:
            raise NoMessages(f"no message is waiting for listener {listener_id!r}")
        return message

    def message_stream(
        self,
        listener: Listener | str,
        *,
        last_event_id: str | None = None,
        remove_on_close: bool = False,
    ) -> MessageStream:
        """Return the listener's messages as a stream for ``EventSourceResponse`` or ``async for``.

        Args:
            listener: a registered listener or its id.
            last_event_id: a client's ``Last-Event-ID``: a running listener then replays every
                message after it from history (or starts with an ``ssehub.reset`` message when
                that is impossible), then continues live. Never anything from before the
                listener was registered: an older id replays from that point.
            remove_on_close: remove the listener from the channel when the stream is closed
                (as the HTTP endpoint does when its client goes away).

        Returns:
            The stream; close it (``async with`` or ``aclose()``; the response does) to
            release the listener.

        Raises:
            UnknownListener: the listener is not registered here.
            ListenerBusy: another stream is consuming it.
        """
        listener_id = listener if isinstance(listener, str) else listener.id
        registered = self.get_listener(listener_id)
        if not isinstance(listener, str) and registered is not listener:
            raise UnknownListener(listener_id)
        stream = MessageStream(registered, self._remove_quietly if remove_on_close else None)
        if last_event_id and registered.state is ListenerState.RUNNING:
            registered._resubscribe(last_event_id)
        return stream

    def _remove_quietly(self, listener: Listener) -> None:
        if self._listeners.get(listener.id) is listener:
            self.remove_listener(listener.id)
