"""The pump: the one loop that moves a stream's frames from its source to the socket.

Every kind of content goes through it: a broker subscription, or the response's
:class:`~ssehub._response._outbox.Outbox` in front of a generator. Its deadlines are one
:class:`~ssehub._response._timers.Alarm` (the pump itself); it runs inside one cancel scope for
its whole life, which the alarm or a disconnect cancels to cut a send or stop. The loop and why
it is shaped so: docs/ARCHITECTURE.md, "The pump".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._waiter import Waiter, waiter_factory
from ._outbox import Outbox
from ._timers import Alarm, current_clock, running_loop

if TYPE_CHECKING:
    from starlette.types import Message, Send

    from .._frames import FrameSource

__all__ = ["Pump"]

_INF = math.inf


def _after_the_end() -> float:
    return _INF


class _Scope:
    """The pump's scope where ``asyncio.timeout`` is not used (trio, Python 3.10): an anyio
    cancel scope with the part of ``asyncio.Timeout``'s interface the pump uses."""

    __slots__ = ("scope",)

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()

    async def __aenter__(self) -> _Scope:
        self.scope.__enter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        return bool(self.scope.__exit__(*exc_info))

    def reschedule(self, when: float) -> None:
        """Cut now (the pump only ever passes ``-inf``)."""
        self.scope.cancel()

    def expired(self) -> bool:
        return self.scope.cancelled_caught


def _cut_scope(asyncio_loop: bool) -> Any:
    if asyncio_loop and sys.version_info >= (3, 11):
        import asyncio  # noqa: TID251 - asyncio's own timeout, only when asyncio runs

        return asyncio.timeout(None)
    return _Scope()


class Pump(Alarm):
    """Streams one response's frames; also the response's alarm (see the module docstring).

    Args:
        send: the ASGI ``send`` of the response.
        source: where frames come from.
        ping: seconds of idleness before a ping (``0``: none).
        ping_bytes: returns the encoded ping.
        send_timeout: seconds a ``send`` may take, or ``None``.
        final_timeout: seconds the sends after the end of sending (what was pending, the
            final empty body) may take.
    """

    __slots__ = (
        "_end_at",
        "_final_timeout",
        "_new_waiter",
        "_now",
        "_outbox",
        "_ping",
        "_ping_bytes",
        "_scope",
        "_send",
        "_send_timeout",
        "_sending_since",
        "_source",
        "_waiter",
        "cut",
        "last_activity",
        "opened",
        "sent_final",
        "stopped",
        "timed_out",
    )

    def __init__(
        self,
        send: Send,
        source: FrameSource,
        *,
        ping: float,
        ping_bytes: Callable[[], bytes],
        send_timeout: float | None,
        final_timeout: float,
    ) -> None:
        super().__init__(current_clock())
        loop = running_loop()
        self._now: Callable[[], float] = loop.time if loop is not None else anyio.current_time
        self._new_waiter: Callable[[], Waiter] = waiter_factory(anyio.lowlevel.current_token())
        self._send = send
        self._source = source
        # The response's own buffer in front of a generator is told about sends, so its
        # producer can pause while one is blocked (see _outbox.py).
        self._outbox = source if isinstance(source, Outbox) else None
        self._ping = ping
        self._ping_bytes = ping_bytes
        self._send_timeout = send_timeout
        self._final_timeout = final_timeout
        self._end_at = _INF  # when sending must end (a shutdown)
        self._sending_since = _INF  # start of the send in progress
        self._waiter: Waiter | None = None
        self._scope: Any = None  # the loop's cancel scope while it runs (see _cut_scope)
        self.last_activity = self._now()
        self.timed_out = False
        """A send took longer than ``send_timeout``."""
        self.cut = False
        """A send was still blocked when sending had to end."""
        self.stopped = False
        """:meth:`abort` was called (the client left)."""
        self.opened = False
        """The response start went out."""
        self.sent_final = False
        """The final empty body went out."""

    # -- control ---------------------------------------------------------------------------

    def end_after(self, delay: float) -> None:
        """End sending in ``delay`` seconds at the latest; idempotent.

        What is pending then goes out with the final empty body; a send still blocked then is
        cut. Safe to call from a plain callback on the event loop.
        """
        at = self._now() + delay
        if at >= self._end_at:
            return
        self._end_at = at
        waiter = self._waiter
        if waiter is not None and delay <= 0:
            self._waiter = None  # due now: wake the wait at once, not at the timer's next turn
            waiter.set()
        else:
            self.start(at)

    def abort(self) -> None:
        """End the stream now without a final body (the client left); from the event loop."""
        self.stopped = True
        self._cut()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, start: Message, opening: list[bytes]) -> None:
        """Send the response ``start``, ``opening`` (when not empty) and then the source's
        frames until it ends or sending must end; then the final empty body.

        Returns early, without the final body, when a send was cut (:attr:`timed_out`,
        :attr:`cut`) or the pump was aborted (:attr:`stopped`).

        Raises:
            Exception: what the source's ``take_frames`` raised (the content's error, after
                the frames before it were sent); no final body is sent then.
        """
        source = self._source
        take = source.take_frames
        pending: list[bytes] | None = opening
        del opening  # this frame lives as long as the stream: it keeps nothing it does not need
        scope = _cut_scope(running_loop() is not None)
        try:
            async with scope:
                self._scope = scope
                if self.stopped:
                    self._cut()  # aborted before it ran (an eager task factory's watch)
                try:
                    await self._transmit(start)
                    del start
                    self.opened = True
                    while True:
                        if pending:
                            body = pending[0] if len(pending) == 1 else b"".join(pending)
                            await self._send_body(body, more_body=True)
                        ending = self._end_at != _INF and self._now() >= self._end_at
                        pending = take()
                        if pending is None or ending:
                            # The source ended, or sending must: what is pending goes out
                            # with the end of the body, unless the content failed: then its
                            # error ends the stream, never a clean end.
                            if ending and self._outbox is not None and self._outbox.failed:
                                if pending:
                                    await self._send_body(b"".join(pending), more_body=True)
                                take()  # raises the content's error
                            await self._send_body(b"".join(pending or ()), more_body=False)
                            break
                        if pending:
                            continue
                        ping_due = self.last_activity + self._ping if self._ping > 0 else _INF
                        deadline = min(ping_due, self._end_at)
                        if self._now() >= ping_due:
                            pending = [self._ping_bytes()]
                            continue
                        # Wait for the source, a timer, a disconnect or the end (inline: a
                        # coroutine more would be a suspended frame more per idle stream).
                        waiter = self._waiter = self._new_waiter()
                        source.on_ready(waiter.set)
                        if deadline != _INF:
                            self.start(deadline)
                        await waiter.wait()
                        self._waiter = None
                finally:
                    self._scope = None
                    # The alarm may stay in the clock's heap until its old time: stopped, it
                    # rings nothing, and without these references it keeps no connection alive.
                    self.stop()
                    self._send = self._source = self._waiter = self._outbox = None  # type: ignore[assignment]
                    self._ping_bytes = bytes  # the response's bound method would keep it alive
                    self._now = _after_the_end  # loop.time would keep the loop and its clock
        except TimeoutError:  # asyncio.timeout's way to say it was cut (ring() or abort()
            if not scope.expired():  # recorded why)
                raise
        if not scope.expired():
            # ring() recorded a cut that never landed: the send finished first. trio delivers a
            # cancellation at the next checkpoint, and after the final body there is none.
            self.timed_out = self.cut = False

    async def _send_body(self, body: bytes, *, more_body: bool) -> None:
        await self._transmit({"type": "http.response.body", "body": body, "more_body": more_body})

    async def _transmit(self, message: Message) -> None:
        now = self._now()
        outbox = self._outbox
        # Recorded even without a deadline: a shutdown may give the send one later.
        self._sending_since = now
        deadline = self._send_deadline(now)
        if deadline != _INF:
            self.start(deadline)  # lazily: an alarm due earlier already is left where it is
        if outbox is not None:
            outbox.send_started()
        try:
            await self._send(message)
        finally:
            self._sending_since = _INF
        # Not after a send that failed or was cut: the stream ends, and a producer let go now
        # would pull its generator past the yield it waits at (its cleanup then runs
        # cancelled instead of shielded).
        if outbox is not None:
            outbox.send_ended()
        if message.get("more_body", False):
            self.last_activity = self._now() if self._ping > 0 else now
        elif message["type"] == "http.response.body":
            self.sent_final = True

    def _send_deadline(self, since: float) -> float:
        """When a send started at ``since`` must be cut."""
        end = self._end_at
        if since >= end:
            return since + self._final_timeout
        timeout = self._send_timeout
        return min(end, _INF if timeout is None else since + timeout)

    def _expired(self, since: float) -> None:
        """The send started at ``since`` went past its deadline: say why it was cut."""
        timeout = self._send_timeout
        if timeout is not None and since + timeout <= self._end_at:
            self.timed_out = True  # the send timeout came first
        else:
            self.cut = True  # sending had to end

    def _cut(self) -> None:
        # Expires at the next loop iteration. Not twice: asyncio refuses to reschedule a
        # timeout already expiring (a disconnect in the same loop turn as a send deadline).
        scope = self._scope
        if scope is not None and not scope.expired():
            scope.reschedule(-_INF)

    # -- the alarm ---------------------------------------------------------------------------

    def ring(self, now: float) -> float | None:
        """Cut an overdue send, end an overdue wait, or answer when to look again."""
        since = self._sending_since
        if since != _INF:
            deadline = self._send_deadline(since)
            if now < deadline:
                return deadline
            self._expired(since)
            self._cut()
            return None
        waiter = self._waiter
        if waiter is None:
            return None  # the pump runs: its next send or wait starts the alarm again
        due = min(self.last_activity + self._ping if self._ping > 0 else _INF, self._end_at)
        if now >= due:
            self._waiter = None
            waiter.set()
            return None
        # An idle stream is looked at again only when its ping (or the end) is due: no
        # periodic wake-ups. A send after a wait starts the alarm for its own deadline.
        return due
