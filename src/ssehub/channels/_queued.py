"""The messages queued for channel listeners, against one byte budget for a whole registry.

Each listener's queue is bounded by ``history_bytes``, but a queue keeps the messages it holds
in memory after history has let them go; without a bound on all queues together, listeners
nobody reads (created over HTTP, lingering) held listeners x ``history_bytes``. A message held
by several queues (a broadcast) is counted once, as it is held once: :class:`QueuedBytes`
counts the queues that hold each message. A send that would take the total over the budget
first drops the largest queues of running listeners, which catch up from history when next
read (docs/security.md, "Memory budgets").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..broker.events import StoredEvent
    from ._listener import Listener

__all__ = ["QueuedBytes"]


class QueuedBytes:
    """The messages held by the queues of the listeners of one channel, or of a registry.

    Args:
        limit: bytes the queued messages may take together (``history_total_bytes``).

    Attributes:
        bytes: what the messages held by at least one queue take now, each counted once.
    """

    __slots__ = ("_holders", "_refs", "bytes", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._refs: dict[StoredEvent, list[int]] = {}  # message -> [queues holding it, cost]
        self._holders: dict[Listener, None] = {}  # listeners holding at least one message

    def hold(self, listener: Listener, event: StoredEvent, cost: int) -> None:
        """Record that ``listener``'s queue holds ``event``, which costs ``cost`` bytes."""
        refs = self._refs.get(event)
        if refs is None:
            self._refs[event] = [1, cost]
            self.bytes += cost
        else:
            refs[0] += 1
        self._holders[listener] = None

    def release(self, event: StoredEvent) -> None:
        """Record that one queue no longer holds ``event``."""
        refs = self._refs[event]
        refs[0] -= 1
        if not refs[0]:
            del self._refs[event]
            self.bytes -= refs[1]

    def forget(self, listener: Listener) -> None:
        """Record that ``listener`` holds nothing any more (its events were released)."""
        self._holders.pop(listener, None)

    def make_room(self, cost: int) -> None:
        """Drop the largest queues of running listeners until ``cost`` more bytes fit.

        A listener that no longer receives (stopped, or removed and draining to its stream)
        cannot catch up: its queue only shrinks as it is read, and is left alone here.
        """
        while self.bytes + cost > self.limit:
            receiving = [holder for holder in self._holders if holder._receiving]
            if not receiving:
                return
            max(receiving, key=_queued_bytes)._catch_up()


def _queued_bytes(listener: Listener) -> int:
    return listener._queued_bytes
