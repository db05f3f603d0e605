"""The contract between event sources that hand out pre-encoded frames and the response.

A :class:`FrameSource` (for example a broker ``Subscription``) gives the response bytes that are
already encoded, so one encoding serves every subscriber and everything pending can go out in a
single ASGI ``send``. :class:`ssehub.EventSourceResponse` detects it and skips its generic
producer task.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["FrameSource"]


@runtime_checkable
class FrameSource(Protocol):
    """A source of encoded SSE frames that the response can stream without re-encoding."""

    async def receive_frames(self) -> list[bytes]:
        """Wait until at least one frame is ready and return every frame pending now, in order.

        Each item is a complete frame (ending in a blank line) encoded with the ``"\\n"``
        separator. Returns an empty list once the source has ended (closed, shut down, or shed
        as a slow consumer); every later call also returns an empty list.

        Must be cancellation-safe: if the caller is cancelled while waiting, no frame is lost.
        """
        ...

    async def aclose(self) -> None:
        """End the source and release its resources; idempotent."""
        ...
