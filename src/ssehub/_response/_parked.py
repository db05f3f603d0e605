"""The sending loop of a stream with direct writes: parked without a cancel scope.

With direct writes (:mod:`ssehub._frames`) the publisher writes live events to the connection
itself, and the stream's task only waits: in a hub, nearly every connection is such a waiting
task. The generic loop (``EventSourceResponse._send_frames``) waits inside a cancel scope whose
deadline is the next ping, plus an outer scope for the end of sending: two scopes and a timer
handle per stream, about 1.8 KiB of the 17 an idle hub connection cost.

:class:`ParkedStream` waits in ``receive_frames()`` with no scope at all. Its deadlines (the
ping's, and the end of sending set by ``EventSourceResponse._end_sending``) are one
:class:`~ssehub._response._alarms.Alarm` on the event loop's shared clock; when one passes,
the alarm interrupts the source (:meth:`~ssehub._frames.WritableFrameSource.interrupt`), whose
pending ``receive_frames()`` returns ``[]`` without ending. Sends, rare on this path (frames
the writer refused, pings, the final empty body), each get their own cancel scope with the
send timeout and the end of sending as the deadline.

asyncio only: the alarm clock runs on asyncio's timer (uvicorn, which offers direct writes,
is asyncio-based anyway). Anywhere else the response keeps the generic loop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from .._exceptions import SendTimeoutError
from ._alarms import Alarm, AlarmClock

if TYPE_CHECKING:
    from starlette.types import Message, Send

    from .._frames import FrameWriter, WritableFrameSource
    from ..response import EventSourceResponse

__all__ = ["ParkedStream"]


class ParkedStream(Alarm):
    """The send loop of one response with a writer, and its alarm.

    Args:
        clock: the running event loop's alarm clock.
        response: the response (its ``_last_activity``, ``_end_sending_at``, ping and send
            settings are read and updated).
        source: the source, which takes the writer and can be interrupted.
        writer: the server's writer for this response.
    """

    __slots__ = ("_interrupted", "_response", "_scope", "_source", "_waiting", "_writer")

    def __init__(
        self,
        clock: AlarmClock,
        response: EventSourceResponse,
        source: WritableFrameSource,
        writer: FrameWriter,
    ) -> None:
        super().__init__(clock)
        self._response = response
        self._source = source
        self._writer = writer
        # The alarm interrupted the source, and the source's [] for it is still to come.
        self._interrupted = False
        self._scope: anyio.CancelScope | None = None  # the pending send's, if any
        self._waiting = False  # parked in receive_frames()

    # -- the alarm --------------------------------------------------------------------------

    def _ping_due(self) -> float:
        interval = self._response._ping_interval
        if interval <= 0:
            return math.inf
        # Frames written directly count as activity: a busy stream never pings.
        return max(self._response._last_activity, self._writer.last_write) + interval

    def _deadline(self) -> float:
        return min(self._ping_due(), self._response._end_sending_at)

    def ring(self, now: float) -> float | None:
        """Interrupt the source once the ping or the end of sending is due, or re-arm."""
        due = self._deadline()
        if now < due:
            return due if due != math.inf else None
        self._interrupted = True
        self._source.interrupt()
        return None

    def end_at(self, at: float) -> None:
        """Sending must end at ``at`` (already in the response's ``_end_sending_at``)."""
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, at)
        elif self._waiting:
            # Parked (with or without a ping armed): ring then, or earlier if it does anyway.
            self.start(at)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, send: Send) -> None:
        """Stream until the source ends, then end the body.

        Raises:
            SendTimeoutError: a send took longer than the response's ``send_timeout``.
        """
        try:
            await self._run(send)
        finally:
            # The alarm may stay in the clock's heap until its old time (it is never taken out
            # of the middle); stopped, it rings nothing, and without these references it keeps
            # no response, source or connection alive meanwhile.
            self.stop()
            self._response = self._source = self._writer = None  # type: ignore[assignment]

    async def _run(self, send: Send) -> None:
        response = self._response
        source = self._source
        writer = self._writer
        receive_frames = source.receive_frames
        attach = source.attach_writer
        time = self._clock._loop.time
        while True:
            due = self._deadline()
            if due != math.inf:
                self.start(due)
            attach(writer)
            self._waiting = True
            try:
                frames = await receive_frames()
            finally:
                self._waiting = False
                attach(None)
                self.stop()
            if frames:
                # Frames pending when the alarm rang come first; the source's [] for the
                # interruption follows at the next receive (the check below then finds the
                # ping no longer due: these frames are activity).
                body = frames[0] if len(frames) == 1 else b"".join(frames)
            elif self._interrupted:
                self._interrupted = False
                now = time()
                if now >= response._end_sending_at:
                    await response._finish_after_shutdown(send, b"")
                    return
                if now < self._ping_due():
                    continue  # written to meanwhile: no ping yet
                body = response._ping_bytes()
            else:
                break  # the source has ended
            if not await self._send(send, body, more_body=True):
                await response._finish_after_shutdown(send, b"")
                return
            response._last_activity = time()
        response.active = False
        if await self._send(send, b"", more_body=False):
            response._complete = True
        else:
            await response._finish_after_shutdown(send, b"")

    async def _send(self, send: Send, body: bytes, *, more_body: bool) -> bool:
        """Send a body message; ``False`` if the end of sending cut it.

        Raises:
            SendTimeoutError: the send took longer than ``send_timeout``.
        """
        response = self._response
        timeout = response.send_timeout
        end = response._end_sending_at
        message: Message = {"type": "http.response.body", "body": body, "more_body": more_body}
        if timeout is None and end == math.inf and not response._ENDS_SENDING:
            await send(message)  # nothing can end this send: no scope needed
            return True
        now = self._clock._loop.time()
        deadline = end if timeout is None else min(now + timeout, end)
        with anyio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            try:
                await send(message)
            finally:
                self._scope = None
        if not scope.cancelled_caught:
            return True
        if self._clock._loop.time() >= response._end_sending_at:
            return False
        raise SendTimeoutError(f"client did not accept data within {timeout} s")
