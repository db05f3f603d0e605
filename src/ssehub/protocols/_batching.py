"""Batching: group high-frequency events into one batch event, and take it apart again.

The batch event format (``docs/protocols.md`` shows it too)::

    id: 43
    event: protocol.batch
    data: {"events":[{"id":"41","event":"task.progress","data":"{\\"percent\\":10}"},
                     {"id":"42","event":"task.progress","data":"{\\"percent\\":20}"},
                     {"id":"43","event":"task.progress","data":"{\\"percent\\":30}"}]}

* Each item is one event as it would have been sent alone: ``data`` is the item's data *text*
  (exactly what a lone event's ``data:`` would carry), ``event`` and ``id`` are present when set.
* The batch's own ``id`` is the id of its **last** item that has one. A browser's
  ``lastEventId`` therefore ends where it would have ended without batching, and a reconnect
  resumes after the whole batch. The client helper updates its ``last_event_id`` item by item,
  so an application that stops mid-batch can resume from the exact item it last handled.
* Only events of batchable kinds are grouped. Anything else (another kind, an event with
  ``retry`` or a comment or no data) first flushes the pending batch, then goes out alone, so
  order is always preserved. A batch of one is sent as the plain event.

:class:`BatchPolicy` is pure (no tasks, no I/O): ``add()`` returns what is due now, ``deadline()``
says when the pending batch must go out, ``poll()`` flushes it once the clock reaches that point.
:func:`batched` drives a policy over a cancellation-safe source on a :class:`ssehub._clock.Clock`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, Final, Generic, Protocol, TypeVar

import anyio

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, SchemaValidationError
from .._excgroups import collapse_excgroups
from ..wire import MessageEvent, ServerSentEvent
from ..wire._json import dumps
from ..wire.event import _LINE_BREAK
from ._codec import parse_json
from ._schema import BATCH_EVENT

__all__ = ["BatchPolicy", "CancelSafeReceiver", "batch_event", "batched", "unbatch"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class CancelSafeReceiver(Protocol[T_co]):
    """A source whose ``receive()`` may be cancelled without losing an item.

    ``receive()`` raises :class:`anyio.EndOfStream` once the source has ended. The subscriptions
    of :class:`~ssehub.protocols.ProgressBoard` and :class:`~ssehub.protocols.HealthMonitor`
    qualify: they read state only after waking, so a cancelled wait consumes nothing.
    """

    async def receive(self) -> T_co:
        """Wait for and return the next item."""
        ...


def _entry_text(item: ServerSentEvent) -> str:
    """One batch item as compact JSON text, exactly as it appears inside the batch's data.

    Raises:
        ConfigurationError: the item has no data (such items are never batched).
    """
    if item.data is None:
        raise ConfigurationError("an event without data cannot be batched")
    entry: dict[str, str] = {}
    if item.id is not None:
        entry["id"] = item.id
    if item.event:
        # An empty type dispatches as "message" when sent alone (WHATWG §9.2.6): left out.
        entry["event"] = item.event
    # Alone, each CR, LF or CRLF ends a data: line, and the parser joins lines with LF.
    entry["data"] = _LINE_BREAK.sub("\n", item.data) if "\r" in item.data else item.data
    return dumps(entry)


# The fixed parts of a batch event's wire bytes around its items (see _batch_size).
_BATCH_HEAD: Final = '{"events":['
_BATCH_TAIL: Final = "]}"
_BATCH_OVERHEAD: Final = len(f"event: {BATCH_EVENT}\ndata: {_BATCH_HEAD}{_BATCH_TAIL}\n\n".encode())


def _batch_size(entries_bytes: int, count: int, last_id: str | None) -> int:
    """The exact length of the encoded batch event of ``count`` items whose entry texts
    total ``entries_bytes`` UTF-8 bytes (commas between them not included)."""
    id_line = 0 if last_id is None else len(f"id: {last_id}\n".encode())
    return _BATCH_OVERHEAD + id_line + entries_bytes + max(0, count - 1)


def _join(texts: list[str], last_id: str | None) -> ServerSentEvent:
    # The data is assembled from the very texts the policy measured, so the measured size is
    # the size on the wire (the JSON text has no CR or LF: JSON escapes them in strings).
    data = f"{_BATCH_HEAD}{','.join(texts)}{_BATCH_TAIL}"
    return ServerSentEvent(data, event=BATCH_EVENT, id=last_id)


def batch_event(items: list[ServerSentEvent]) -> ServerSentEvent:
    """Encode ``items`` as one batch event (see the module docstring for the format).

    Raises:
        ConfigurationError: an item has no data (such items are never batched).
    """
    last_id: str | None = None
    for item in items:
        if item.id is not None:
            last_id = item.id
    return _join([_entry_text(item) for item in items], last_id)


class BatchPolicy:
    """Groups events by count, bytes and maximum delay. Pure: it never sleeps or spawns.

    Args:
        max_count: flush when this many events are pending.
        max_bytes: the most wire bytes one batch event may take (``id``, ``event`` and ``data``
            lines included). The policy measures each item as it will appear *inside* the
            batch (its data re-escaped as a JSON string, so quotes, backslashes and control
            characters count twice or more), and the batch is built from those very texts, so
            the accounting is exact. An event that cannot share a batch within the bound goes
            out alone as the plain event; one larger than the bound on its own still goes out
            (an event cannot be split), never in a batch.
        max_delay: seconds the first pending event may wait; read on ``clock``.
        kinds: event types that may be batched; ``None`` means every event type.
        clock: the time source (default: :class:`ssehub._clock.SystemClock`).

    Raises:
        ConfigurationError: a bound is not positive.

    The defaults (100 events, 64 KiB, 50 ms) keep added latency under the ~100 ms at which people
    notice UI lag, and batches well below the proxy buffer sizes of nginx (4-8 KiB pages, but
    bounded reads) and browsers' per-message costs.
    """

    def __init__(
        self,
        *,
        max_count: int = 100,
        max_bytes: int = 64 * 1024,
        max_delay: float = 0.05,
        kinds: Collection[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_count < 1 or max_bytes < 1 or not max_delay > 0:
            raise ConfigurationError("max_count, max_bytes and max_delay must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self.kinds = None if kinds is None else frozenset(kinds)
        self.clock: Clock = clock or SystemClock()
        self._pending: list[ServerSentEvent] = []
        self._texts: list[str] = []  # each pending event's entry text, as the batch holds it
        self._entries_bytes = 0  # their UTF-8 length, commas not included
        self._last_id: str | None = None  # the id the batch event would carry
        self._deadline: float | None = None

    @property
    def pending(self) -> int:
        """How many events wait in the current batch."""
        return len(self._pending)

    def batchable(self, event: ServerSentEvent) -> bool:
        """Whether ``event`` may join a batch."""
        if event.data is None or event.retry is not None or event.comment is not None:
            return False
        return self.kinds is None or (event.event or "message") in self.kinds

    def add(self, event: ServerSentEvent) -> list[ServerSentEvent]:
        """Offer one event; return the events to send now, in order (often none)."""
        if not self.batchable(event):
            return [*self.flush(), event]
        text = _entry_text(event)
        text_bytes = len(text.encode())
        out: list[ServerSentEvent] = []
        if self._pending:
            last_id = self._last_id if event.id is None else event.id
            size = _batch_size(self._entries_bytes + text_bytes, len(self._pending) + 1, last_id)
            if size > self.max_bytes:
                out.extend(self.flush())
        if _batch_size(text_bytes, 1, event.id) >= self.max_bytes:
            # Even a batch of this event alone reaches the bound, so no other event can ever
            # join it: holding it until the deadline would only add latency.
            out.append(event)
            return out
        if not self._pending:
            self._deadline = self.clock.time() + self.max_delay
        self._pending.append(event)
        self._texts.append(text)
        self._entries_bytes += text_bytes
        if event.id is not None:
            self._last_id = event.id
        if len(self._pending) >= self.max_count:
            out.extend(self.flush())
        return out

    def deadline(self) -> float | None:
        """When the pending batch must be flushed, in clock time; ``None`` when nothing waits.

        A deadline only appears when a batch starts and disappears when it is flushed, so a
        sleeper may wait for an old deadline and then re-check: the next one is never earlier.
        """
        return self._deadline

    def poll(self) -> list[ServerSentEvent]:
        """Flush the pending batch if its deadline has passed; return what to send."""
        if self._deadline is not None and self.clock.time() >= self._deadline:
            return self.flush()
        return []

    def flush(self) -> list[ServerSentEvent]:
        """Return the pending events now: nothing, the lone event, or one batch event."""
        pending, texts, last_id = self._pending, self._texts, self._last_id
        self._pending, self._texts, self._entries_bytes = [], [], 0
        self._last_id = self._deadline = None
        if len(pending) <= 1:
            return pending
        return [_join(texts, last_id)]


class _Receive(Generic[T]):
    """Race one ``receive()`` against a deadline on a clock; never loses an item."""

    def __init__(self, source: CancelSafeReceiver[T], clock: Clock) -> None:
        self.source = source
        self.clock = clock

    async def before(self, deadline: float | None) -> list[T]:
        """Return ``[item]``, or ``[]`` once the deadline passes first.

        Raises:
            anyio.EndOfStream: the source ended.
        """
        if deadline is None:
            return [await self.source.receive()]
        if isinstance(self.clock, SystemClock):
            # The real clock: a plain timeout, without a helper task.
            with anyio.move_on_after(deadline - self.clock.time()):
                return [await self.source.receive()]
            return []
        got: list[T] = []
        ended = False
        # The source's own error (ProgressOverrun...) comes out as itself, not in a group.
        with collapse_excgroups():
            async with anyio.create_task_group() as tg:

                async def timer() -> None:
                    await self.clock.sleep_until(deadline)
                    tg.cancel_scope.cancel()

                tg.start_soon(timer)
                try:
                    got.append(await self.source.receive())
                except anyio.EndOfStream:
                    ended = True
                tg.cancel_scope.cancel()
        if ended:
            raise anyio.EndOfStream
        return got


async def batched(
    source: CancelSafeReceiver[T],
    policy: BatchPolicy | None,
    *,
    encode: Callable[[T], ServerSentEvent] | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """Yield the events of ``source``, grouped by ``policy`` (or one by one when it is ``None``).

    The generator holds no task group across its ``yield`` (a helper task exists only while it
    waits), so it is safe to hand to :class:`ssehub.EventSourceResponse`.

    Args:
        source: a cancellation-safe source (see :class:`CancelSafeReceiver`).
        policy: the batching policy; ``None`` when the client did not enable batching.
        encode: turns a source item into an event (default: items already are events).

    Yields:
        Events and batch events, in source order; the pending batch is flushed when the source
        ends.
    """
    receiver = _Receive(source, policy.clock if policy else SystemClock())
    while True:
        if policy is not None:
            for due in policy.poll():
                yield due
        try:
            arrived = await receiver.before(policy.deadline() if policy else None)
        except anyio.EndOfStream:
            break
        if not arrived:
            continue
        event = encode(arrived[0]) if encode is not None else arrived[0]
        if not isinstance(event, ServerSentEvent):
            raise TypeError(f"batched() needs ServerSentEvent items, got {type(event).__name__}")
        if policy is None:
            yield event
            continue
        for due in policy.add(event):
            yield due
    if policy is not None:
        for due in policy.flush():
            yield due


def unbatch(message: MessageEvent, last_event_id: str = "") -> list[MessageEvent]:
    """Split a received batch event back into the events it carries.

    Args:
        message: a dispatched event; anything but a batch is returned as is.
        last_event_id: the last event ID before this batch; items without an id inherit the
            running id, exactly as a browser's ``lastEventId`` persists between events.

    Returns:
        One :class:`MessageEvent` per item, in order, each with its own ``id``.

    Raises:
        SchemaValidationError: the batch is malformed.
    """
    if message.event != BATCH_EVENT:
        return [message]
    value: Any = parse_json(BATCH_EVENT, message.data)
    items = value.get("events") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise SchemaValidationError(BATCH_EVENT, "expected an object with an 'events' list")
    out: list[MessageEvent] = []
    running = last_event_id
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise SchemaValidationError(BATCH_EVENT, f"item {index} has no 'data' text")
        event = item.get("event", "message")
        if event == "":
            event = "message"  # as a lone event with an empty "event:" line dispatches
        item_id = item.get("id", running)
        if not isinstance(event, str) or not isinstance(item_id, str) or "\0" in item_id:
            raise SchemaValidationError(BATCH_EVENT, f"item {index} has an invalid event or id")
        running = item_id
        out.append(MessageEvent(data=item["data"], event=event, id=running))
    return out
