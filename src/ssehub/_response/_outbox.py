"""A bounded buffer of encoded frames between the producer task and the sender.

The producer appends frames without a checkpoint while there is room, so a generator that is
ahead of the socket fills the buffer in one go; the sender takes *everything* pending at each
wake-up and writes it with one ASGI ``send`` (coalescing). Waking happens through one
:class:`anyio.Event` per wake-up, never per frame, which keeps the per-event cost to a list
append.
"""

from __future__ import annotations

from typing import Final

import anyio

__all__ = ["DEFAULT_LIMIT", "Outbox"]

DEFAULT_LIMIT: Final = 64 * 1024
"""Bytes pending before the producer waits: large enough that one ``send`` carries hundreds of
small events, small enough to bound the memory a frozen client can pin (send_timeout sheds it)."""


class Outbox:
    """Single-producer, single-consumer frame buffer with a byte bound.

    Args:
        limit: the producer waits in :meth:`put` once this many bytes are pending.
    """

    __slots__ = ("_chunks", "_closed", "_limit", "_readable", "_size", "_writable")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._closed = False
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None

    @property
    def pending(self) -> bool:
        """Whether frames are waiting to be taken."""
        return bool(self._chunks)

    def put_nowait(self, chunk: bytes) -> None:
        """Append ``chunk`` without waiting; the producer checks :attr:`full` afterwards."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        readable = self._readable
        if readable is not None:
            self._readable = None
            readable.set()

    @property
    def full(self) -> bool:
        """Whether pending bytes reached the bound (the producer then awaits :meth:`drained`)."""
        return self._size >= self._limit

    async def drained(self) -> None:
        """Wait until the sender has taken the pending frames."""
        if self._size >= self._limit:
            writable = self._writable = anyio.Event()
            await writable.wait()

    def close(self) -> None:
        """Mark the end of the stream: :meth:`take` returns ``None`` once the buffer is empty."""
        self._closed = True
        readable = self._readable
        if readable is not None:
            self._readable = None
            readable.set()

    def _drain(self) -> list[bytes]:
        # Hand over every pending frame and wake a producer waiting for room.
        chunks = self._chunks
        self._chunks = []
        self._size = 0
        writable = self._writable
        if writable is not None:
            self._writable = None
            writable.set()
        return chunks

    def take_nowait(self) -> bytes:
        """Return every pending frame joined (``b""`` when none) without waiting."""
        return b"".join(self._drain())

    async def take(self) -> bytes | None:
        """Wait for frames and return all of them joined, or ``None`` at the end of the stream."""
        while not self._chunks:
            if self._closed:
                return None
            readable = self._readable = anyio.Event()
            await readable.wait()
        chunks = self._drain()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
