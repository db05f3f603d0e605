"""What a subscription does when its bounded queue is full."""

from __future__ import annotations

import enum

from .._exceptions import ConfigurationError

__all__ = ["OverflowPolicy"]


class OverflowPolicy(str, enum.Enum):
    """The overflow policy of a subscriber's bounded queue.

    ``DISCONNECT`` is the default because for SSE it loses nothing: the slow subscriber's
    stream ends, its queue is freed at once (so one stuck client cannot grow the hub's memory),
    the browser reconnects with ``Last-Event-ID``, and history replays what it missed.
    """

    DISCONNECT = "disconnect"
    """End the subscription (``receive()`` returns ``[]``, ``take_frames()`` ``None``;
    iteration raises :class:`~ssehub.SlowConsumer`); counted as *shed* in the statistics."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest queued events and put one ``ssehub.dropped`` notice where the gap is."""
    BLOCK = "block"
    """``publish`` waits until every target subscriber has room: back-pressure for in-process
    pipelines. One stuck subscriber stalls publishing, so never use it for browsers. A private
    event waits for every subscriber of its topics, readers it is hidden from included (which
    subscribers may see it is known only once it is stored)."""

    @classmethod
    def parse(cls, value: OverflowPolicy | str) -> OverflowPolicy:
        """Return the policy for an enum member or its name (``"drop_oldest"``, ``"drop-oldest"``).

        Raises:
            ConfigurationError: not a known policy.
        """
        if isinstance(value, OverflowPolicy):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower().replace("-", "_"))
            except ValueError:
                pass
        names = ", ".join(member.value for member in cls)
        raise ConfigurationError(f"unknown overflow policy {value!r}; expected one of: {names}")
