"""The contract between a source of encoded frames and the response that streams it.

A :class:`FrameSource` (a broker ``Subscription``, or the response's buffer in front of a
generator) hands out bytes already encoded, once for every subscriber. It is pull-only: it knows
nothing about transports, timers or cancellation; it appends, and calls one callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["FrameSource", "ReadyCallback"]

ReadyCallback = Callable[[], object]
"""Called with no arguments when a source has something to take (or has ended)."""


@runtime_checkable
class FrameSource(Protocol):
    """A source of encoded SSE frames that :class:`~ssehub.EventSourceResponse` streams as is.

    Each frame is a complete event (ending in a blank line) encoded with the ``"\\n"``
    separator. All methods are called from the event loop's thread.
    """

    def take_frames(self) -> list[bytes] | None:
        """Return every frame pending now, in order, without waiting.

        Returns:
            The frames (``[]`` when none is pending), or ``None`` once the source has ended and
            everything it had was taken; every later call returns ``None`` too.
        """
        ...

    def on_ready(self, callback: ReadyCallback | None) -> None:
        """Call ``callback`` once, the next time a frame is pending or the source ends.

        A new call replaces the previous callback; ``None`` forgets it. The callback runs
        synchronously inside whatever made the source ready (a publish), so it must be cheap
        and must not raise: setting an event is the intended use. A consumer calls
        :meth:`take_frames` first and registers only when that returned ``[]``.
        """
        ...

    async def aclose(self) -> None:
        """End the source and release what it holds; idempotent."""
        ...
