"""The contract between event sources that hand out pre-encoded frames and the response.

A :class:`FrameSource` (for example a broker ``Subscription``) gives the response bytes that are
already encoded, so one encoding serves every subscriber and everything pending can go out in a
single ASGI ``send``. :class:`ssehub.EventSourceResponse` detects it and skips its generic
producer task.

Direct writes go one step further. When the server offers the :data:`DIRECT_WRITE` extension
(``ssehub serve`` does, through :class:`ssehub.uvicorn.HttpToolsProtocol`) and the source has an
``attach_writer`` method (see :class:`WritableFrameSource`), the response attaches a
:class:`FrameWriter` while it waits: the publisher then writes a frame to the connection itself,
in the publishing call, instead of queueing it and waking the stream's task. In fan-out that
removes the task switch and the ASGI ``send`` chain from every delivery. Whenever the writer
cannot take a frame at once (the connection's buffer is full, the client left), the frame is
queued and the stream's task sends it the usual way, with its send timeout, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from starlette.types import Send

__all__ = [
    "DIRECT_WRITE",
    "DirectWrite",
    "FrameSource",
    "FrameWriter",
    "WritableFrameSource",
]

DIRECT_WRITE = "ssehub.direct_write"
"""The key of the :class:`DirectWrite` extension in an ASGI scope's ``extensions``."""


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


class FrameWriter(Protocol):
    """Writes one frame to a streaming response's connection at once, or refuses.

    Attributes:
        last_write: when the last frame was written (the async library's clock,
            ``anyio.current_time()``); the response counts idleness for pings from it.
    """

    last_write: float

    def __call__(self, frame: bytes) -> bool:
        """Write ``frame`` (a complete SSE frame) now; return ``False`` if it cannot be written
        at once (the connection's buffer is full, or it is closed). Never raises, never blocks.
        """
        ...


@runtime_checkable
class WritableFrameSource(FrameSource, Protocol):
    """A :class:`FrameSource` that can deliver frames through a :class:`FrameWriter`."""

    def attach_writer(self, writer: FrameWriter | None) -> None:
        """Deliver frames through ``writer`` while nothing is queued; ``None`` detaches it.

        While a writer is attached and the source has nothing pending, a new frame is given to
        the writer instead of being queued; a frame the writer refuses, and every frame after
        it, is queued for :meth:`receive_frames`. The consumer detaches the writer before it
        sends what it received (so a frame written directly never overtakes one being sent)
        and attaches it again before it waits. A source that ends detaches it itself.
        """
        ...

    def close(self) -> None:
        """End the source now (as :meth:`aclose`, from a plain callback): a pending
        :meth:`receive_frames` returns what is left, then ``[]``."""
        ...

    def interrupt(self) -> None:
        """Make a :meth:`receive_frames` call (the pending one, or the next) return ``[]``
        once without ending the source; from a plain callback.

        A consumer that parks in :meth:`receive_frames` without a cancel scope (the response
        with direct writes) is woken this way when its ping is due. Frames already pending
        are returned first, and the ``[]`` by the call after them: every interruption
        yields exactly one ``[]``. Telling it from the end is up to the caller, who knows
        whether it asked for one.
        """
        ...


class DirectWrite(Protocol):
    """The server side of direct writes, found in ``scope["extensions"][DIRECT_WRITE]``."""

    def writer_for(self, send: Send) -> FrameWriter | None:
        """Return a writer for this response, or ``None`` when frames must go through ``send``.

        Call it after the response start was sent. It returns ``None`` unless ``send`` is the
        server's own ``send`` (an ASGI middleware that wraps ``send`` must see every message,
        so direct writes are only possible when nothing wraps it) and the body is streamed in
        a way the writer can continue (HTTP/1.1 chunked transfer coding).
        """
        ...

    def on_disconnect(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback`` once when the client's connection is lost (at once if it already
        is); ``None`` forgets it. Called on the event loop, outside any task.

        A response that has it needs no task waiting in ASGI ``receive()`` for the
        ``http.disconnect`` message: one task and its frames fewer per idle stream.
        """
        ...
