"""A listener: a subscription to its own private stream plus its channel's broadcasts.

A listener is a broker :class:`~ssehub.broker.Subscription` to two topics of its channel's
broker: the channel's broadcast topic and the listener's own topic. So its queue is bounded with
the channel's overflow policy, every message has a broker id, and resuming after an id replays
the history of both topics exactly, as for topics of the hub.

A listener shed by the ``disconnect`` policy (it fell behind) is not lost: the next read
re-subscribes after the last message it delivered, so history fills the gap (or an
``ssehub.reset`` message says it could not). Only :meth:`Listener.stop`, removal, an
end-of-stream message, or the channel shutting down end its stream.
"""

from __future__ import annotations

import enum
import inspect
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio

from .._exceptions import ConfigurationError, ListenerBusy, UnknownListener
from ..broker.events import StoredEvent
from ..broker.history import event_cost
from ..broker.stats import SubscriptionStatistics
from ..broker.subscription import EndReason, Item, Subscription
from ._message import Message, message_from_item

if TYPE_CHECKING:
    from types import TracebackType

    from ._channel import Channel

__all__ = ["NAME_PATTERN", "Listener", "ListenerState", "MessageHook", "MessageStream"]

MessageHook = Callable[[Message], "Awaitable[None] | None"]
"""``on_message(message)``: return to accept, raise :class:`~ssehub.MessageRejected` to refuse."""

NAME_PATTERN: Final = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.\-]{1,64}")
"""Channel names and listener ids: 1-64 of ``A-Z a-z 0-9 _ . -``, safe in URLs and topics;
not ``.`` or ``..``, which clients resolve away as path segments (RFC 3986, section 5.2.4)."""


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it matches :data:`NAME_PATTERN`.

    Raises:
        ConfigurationError: it does not (the message never echoes a long value).
    """
    if isinstance(value, str) and NAME_PATTERN.fullmatch(value):
        return value
    raise ConfigurationError(f"{kind} must be 1-64 characters from [A-Za-z0-9_.-], not . or ..")


class ListenerState(str, enum.Enum):
    """Where a listener is in its life."""

    NEW = "new"
    """Not registered with a channel yet."""
    RUNNING = "running"
    """Registered; messages are queued for it."""
    STOPPED = "stopped"
    """Stopped: what was queued is still delivered, then its stream ends; ``start()`` resumes."""
    REMOVED = "removed"
    """Removed from its channel (for good)."""


class Listener:
    """A named receiver of channel messages.

    Args:
        id: the listener id (1-64 of ``A-Z a-z 0-9 _ . -``); a random one by default.
        on_message: a hook called with every message before it is queued for this listener
            (sync or async). Raise :class:`~ssehub.MessageRejected` to refuse it: the sender
            gets the error and no listener receives the message. Other exceptions also reach
            the sender (and also deliver nothing).

    Raises:
        ConfigurationError: the id is malformed.
    """

    __slots__ = (
        "_buffer",
        "_channel",
        "_consumed",
        "_floor",
        "_last_id",
        "_queued_bytes",
        "_room",
        "_state",
        "_sub",
        "_topic",
        "id",
        "on_message",
    )

    def __init__(self, id: str | None = None, *, on_message: MessageHook | None = None) -> None:
        self.id = secrets.token_hex(8) if id is None else check_name("listener id", id)
        self.on_message = on_message
        self._channel: Channel | None = None
        self._state = ListenerState.NEW
        self._sub: Subscription | None = None
        self._buffer: deque[Item] = deque()
        self._last_id: str | None = None
        self._consumed = False
        self._topic = ""  # its private topic, set when registered
        self._floor = ""  # the channel's newest id when it was registered: replay starts after
        # Bytes of messages queued for it and not yet delivered (the channel adds, delivery
        # subtracts); over the channel's budget it catches up from history instead.
        self._queued_bytes = 0
        self._room: anyio.Event | None = None  # set when bytes leave the queue (block policy)

    def __repr__(self) -> str:
        return f"<Listener {self.id!r} {self._state.value}>"

    @property
    def streaming(self) -> bool:
        """Whether a message stream is consuming this listener now (at most one at a time)."""
        return self._consumed

    @property
    def state(self) -> ListenerState:
        """The listener's state."""
        return self._state

    @property
    def channel(self) -> Channel | None:
        """The channel it is registered with, or ``None``."""
        return self._channel

    @property
    def last_event_id(self) -> str | None:
        """The id of the last message this listener delivered (``None`` before the first)."""
        return self._last_id

    def statistics(self) -> SubscriptionStatistics:
        """Return ``(queued, peak, dropped, delivered)`` of its current queue."""
        if self._sub is None:
            return SubscriptionStatistics(0, 0, 0, 0)
        return self._sub.statistics()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart) receiving; idempotent while running.

        A restarted listener resumes after the last message it delivered (or, before the first,
        after the point it was registered): what was sent to it while it was stopped is
        replayed from its channel's history.

        Raises:
            UnknownListener: it is not registered with a channel (or was removed).
            BrokerClosed: the channel is not running.
        """
        channel = self._channel
        if channel is None or self._state is ListenerState.REMOVED:
            raise UnknownListener(self.id)
        if self._state is ListenerState.RUNNING:
            return
        # Registering starts live; a restart resumes, from the join point at the latest.
        self._resubscribe(None if self._state is ListenerState.NEW else self._resume_point())
        self._state = ListenerState.RUNNING

    def stop(self) -> None:
        """Stop receiving new messages; queued ones are still delivered, then the stream ends.

        Idempotent; a removed listener stays removed.
        """
        if self._state is ListenerState.RUNNING:
            self._state = ListenerState.STOPPED
            if self._sub is not None:
                self._sub.close()
            self._wake()

    # -- called by the channel -------------------------------------------------------------------

    def _attach(self, channel: Channel, topic: str, floor: str) -> None:
        if self._channel is not None or self._state is not ListenerState.NEW:
            raise ConfigurationError(f"listener {self.id!r} is already registered with a channel")
        self._channel = channel
        self._topic = topic
        self._floor = floor
        try:
            self.start()
        except BaseException:
            self._channel = None
            raise

    def _detach(self) -> None:
        self._state = ListenerState.REMOVED
        if self._sub is not None:
            self._sub.close()
        self._wake()

    # -- its queue in bytes (see Channel._queued) --------------------------------------------------

    @property
    def _receiving(self) -> bool:
        """Whether messages sent now are queued for it (running, with an open subscription)."""
        sub = self._sub
        return self._state is ListenerState.RUNNING and sub is not None and not sub.closed

    def _catch_up(self) -> None:
        """Drop the queue (its memory goes now) and resume from history at the next read."""
        self._resubscribe(self._resume_point())

    async def _wait_for_bytes(self) -> None:
        room = self._room
        if room is None:
            room = self._room = anyio.Event()
        await room.wait()

    def _wake(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

    def _resume_point(self) -> str:
        """Where a restart or a catch-up resumes: the last delivered id, else the join point."""
        return self._last_id or self._floor

    def _resubscribe(self, last_event_id: str | None) -> None:
        channel = self._channel
        if channel is None:
            raise UnknownListener(self.id)
        new = channel._subscribe(self, last_event_id)
        old, self._sub = self._sub, new
        # Items taken from the old queue but not yet delivered are replayed by the new one.
        self._buffer.clear()
        self._queued_bytes = 0  # what the new one replays comes from history
        if old is not None:
            old.close()
        self._wake()

    async def _fetch(self, *, wait: bool) -> list[Item] | None:
        """Return the items pending now (waiting for some if ``wait``); ``None`` once ended."""
        while True:
            sub = self._sub
            if sub is None:
                return None
            if wait:
                items = await sub.receive()
            else:
                await sub.prepare()  # a catch-up subscription fetches its replay first
                items = sub.receive_nowait()
                if not items and not sub.closed:
                    return []
            if items:
                return items
            if self._sub is not sub:
                continue  # restarted meanwhile: read the new subscription
            if sub.end_reason is EndReason.SHED and self._state is ListenerState.RUNNING:
                # Fell behind: catch up from history after the last delivered message.
                self._resubscribe(self._resume_point())
                continue
            return None

    def _delivered(self, item: Item) -> None:
        if isinstance(item, StoredEvent):
            self._last_id = item.id
            if self._queued_bytes:
                self._queued_bytes = max(0, self._queued_bytes - event_cost(item))
                sub = self._sub
                if not self._buffer and (sub is None or not sub.statistics().queued):
                    # Nothing left: whatever was counted for messages dropped by drop_oldest
                    # (never delivered) goes too.
                    self._queued_bytes = 0
                self._wake()

    async def _next_message(self) -> Message | None:
        """Return the next message without waiting, ``None`` if none, END once ended."""
        buffer = self._buffer
        if not buffer:
            items = await self._fetch(wait=False)
            if items is None:
                return Message.end()
            if not items:
                return None
            buffer.extend(items)
        item = buffer.popleft()
        self._delivered(item)
        return message_from_item(item)


class MessageStream:
    """A listener's messages, for :class:`~ssehub.EventSourceResponse` or ``async for``.

    It is an async iterator of :class:`Message`; as the content of an
    :class:`~ssehub.EventSourceResponse` each message goes out as the frame the channel
    stored (:meth:`Message.encode`). It ends
    with the end-of-stream frame (or message) when the listener stops or is removed, or the
    channel shuts down. One stream per listener at a time.

    Made by :meth:`ssehub.Channel.message_stream`.
    """

    __slots__ = ("_closed", "_ended", "_listener", "_on_close")

    def __init__(self, listener: Listener, on_close: Callable[[Listener], None] | None) -> None:
        if listener._consumed:
            raise ListenerBusy(listener.id)
        listener._consumed = True
        self._listener = listener
        self._on_close = on_close
        self._ended = False
        self._closed = False

    @property
    def listener(self) -> Listener:
        """The listener whose messages this stream yields."""
        return self._listener

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> Message:
        """Return the next message; the end-of-stream message once, then stop.

        Raises:
            StopAsyncIteration: after the end-of-stream message.
        """
        if self._ended:
            raise StopAsyncIteration
        listener = self._listener
        buffer = listener._buffer
        if not buffer:
            items = await listener._fetch(wait=True)
            if items is None:
                self._ended = True
                return Message.end()
            buffer.extend(items)
        item = buffer.popleft()
        listener._delivered(item)
        return message_from_item(item)

    async def aclose(self) -> None:
        """End this stream and release the listener (a new stream may consume it); idempotent."""
        if self._closed:
            return
        self._closed = self._ended = True
        self._listener._consumed = False
        if self._on_close is not None:
            self._on_close(self._listener)

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def run_hook(hook: MessageHook, message: Message) -> None:
    """Call a sync or async ``on_message`` hook."""
    result = hook(message)
    if inspect.isawaitable(result):
        await result
