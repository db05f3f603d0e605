"""Releasing subscriptions that nobody can read any more.

The broker references a subscription's state, never its handle (see ``_state.py``). When the
last reference to a :class:`~ssehub.broker.Subscription` goes (the response closed the user's
generator that iterated it, and dropped it), CPython frees the handle at once, and the state's
weak-reference callback, the broker's :class:`Releaser`, has the broker end the state with
``EndReason.ABANDONED``: it is unregistered, counted out of the statistics, and
``on_unsubscribe`` runs. A handle caught in a reference cycle goes when the cyclic collector
runs instead.

The callback never ends the state itself. It runs wherever the last reference went: in another
thread, inside the cyclic collector in the middle of the fan-out (which iterates the very dicts
unregistering changes), or during interpreter shutdown. So it only appends the state to a queue
and asks the broker's event loop, thread-safely, to run :meth:`Releaser.release` soon.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._state import EndReason

if TYPE_CHECKING:
    import anyio.lowlevel

    from ._state import SubscriptionState

__all__ = ["Releaser"]

logger = logging.getLogger("ssehub.broker")

CallSoon = Callable[[Callable[[], object]], object]


class Releaser:
    """Ends, on the broker's event loop, the states whose handle was garbage collected.

    One per broker, shared by all its states as their weak-reference callback (so it costs no
    object per subscription).
    """

    __slots__ = ("_call_soon", "_pending", "_scheduled")

    def __init__(self) -> None:
        self._pending: deque[SubscriptionState] = deque()
        self._scheduled = False
        self._call_soon: CallSoon | None = None

    def start(self, token: anyio.lowlevel.EventLoopToken) -> None:
        """Deliver releases to the event loop of ``token`` (the broker's)."""
        native = token.native_token
        # asyncio's loop.call_soon_threadsafe and trio's TrioToken.run_sync_soon: both safe from
        # any thread, from the loop's own thread, and while the collector runs, and neither
        # blocks.
        call_soon: CallSoon | None = getattr(native, "call_soon_threadsafe", None)
        if call_soon is None:
            call_soon = getattr(native, "run_sync_soon")  # noqa: B009 - typed as Any
        self._call_soon = call_soon

    def __call__(self, state: SubscriptionState) -> None:
        """The weak-reference callback: queue ``state`` for release; from any thread.

        Only appends and schedules (see the module docstring). A state already ended (closed
        before its handle was dropped, the common case) needs nothing.
        """
        if state._end_reason is not None:
            return
        self._pending.append(state)
        # Checked after the append: release() clears the flag before it empties the queue, so
        # either it sees this state or this call sees the flag cleared and schedules again.
        if self._scheduled:
            return
        call_soon = self._call_soon
        if call_soon is None:
            return
        self._scheduled = True
        try:
            call_soon(self.release)
        except Exception:  # noqa: BLE001 - the loop has finished: so has the broker
            # (its exit ended every subscription), or the interpreter is shutting down.
            self._scheduled = False

    def release(self) -> None:
        """End every queued state with ``EndReason.ABANDONED``; on the event loop thread."""
        self._scheduled = False
        pending = self._pending
        while pending:
            state = pending.popleft()
            try:
                state._end(EndReason.ABANDONED)
            except Exception:
                # Hooks are guarded already; this runs as a bare loop callback, where an error
                # would stop trio's run, so nothing may escape.
                logger.exception("ssehub broker: releasing an abandoned subscription failed")
