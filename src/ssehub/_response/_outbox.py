"""The frame source in front of a generator: a bounded buffer between its producer and the pump.

The producer appends encoded items without a checkpoint while there is room, and the pump takes
everything pending in one ``send``. The producer also pauses while a send is blocked, so the
generator waits at its ``yield`` as under sse-starlette, and a disconnect or send timeout
closes it from there (docs/ARCHITECTURE.md, "Backpressure").
"""

from __future__ import annotations

from typing import Final

import anyio

from .._frames import ReadyCallback

__all__ = ["DEFAULT_LIMIT", "Outbox"]

DEFAULT_LIMIT: Final = 64 * 1024
"""Bytes pending before the producer waits: large enough that one ``send`` carries hundreds of
small events, small enough to bound the memory a frozen client can pin (send_timeout sheds it)."""


class Outbox:
    """Single-producer, single-consumer frame buffer with a byte bound; a ``FrameSource``.

    The producer waits in :meth:`room` once :data:`DEFAULT_LIMIT` bytes are pending.
    """

    __slots__ = ("_chunks", "_closed", "_error", "_ready", "_sending", "_size", "_writable")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._closed = False
        self._error: Exception | None = None
        self._sending = False  # the pump is inside a send (see send_started())
        self._ready: ReadyCallback | None = None
        self._writable: anyio.Event | None = None

    # -- producer side ---------------------------------------------------------------------

    def put_nowait(self, chunk: bytes) -> None:
        """Append ``chunk`` without waiting; the producer awaits :meth:`room` afterwards."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._notify()

    @property
    def paused(self) -> bool:
        """Whether the producer must wait: the bound is reached, or a send is in flight."""
        return self._size >= DEFAULT_LIMIT or (self._sending and self._size > 0)

    async def room(self) -> None:
        """Wait while :attr:`paused`."""
        while self.paused:
            writable = self._writable = anyio.Event()
            await writable.wait()

    def close(self) -> None:
        """Mark the end of the content: :meth:`take_frames` returns ``None`` once empty."""
        self._closed = True
        self._notify()

    def fail(self, error: Exception) -> None:
        """End the content with ``error``: :meth:`take_frames` raises it once the frames
        before it were taken (they still go out, as under sse-starlette)."""
        self._error = error
        self.close()

    @property
    def failed(self) -> bool:
        """Whether the content ended with an error not yet raised."""
        return self._error is not None

    def leftover_error(self) -> Exception | None:
        """Return (and forget) the content's error if :meth:`take_frames` never raised it
        (the stream ended first: a disconnect, a send timeout)."""
        error, self._error = self._error, None
        return error

    def _notify(self) -> None:
        ready = self._ready
        if ready is not None:
            self._ready = None
            ready()

    # -- consumer side (implements FrameSource) --------------------------------------------

    def take_frames(self) -> list[bytes] | None:
        """Return every pending frame (``[]`` if none), or ``None`` once closed and empty.

        Raises:
            Exception: the content's error (see :meth:`fail`), once the frames are taken.
        """
        chunks = self._chunks
        if chunks:
            self._chunks = []
            self._size = 0
            self._wake_producer()
            return chunks
        if self._error is not None:
            error, self._error = self._error, None  # its traceback references this outbox
            raise error
        return None if self._closed else []

    def send_started(self) -> None:
        """The pump entered a send of this stream (while it lasts, the producer pauses as
        soon as it has something pending)."""
        self._sending = True

    def send_ended(self) -> None:
        """The pump left the send."""
        self._sending = False
        self._wake_producer()

    def on_ready(self, callback: ReadyCallback | None) -> None:
        """Call ``callback`` once when a frame is appended or the content ends."""
        self._ready = callback
        if callback is not None and (self._chunks or self._closed):
            self._notify()

    async def aclose(self) -> None:
        """Nothing to release: the producer task owns the content."""

    def _wake_producer(self) -> None:
        writable = self._writable
        if writable is not None and not self.paused:
            self._writable = None
            writable.set()
