"""The hub's body lane: event-stream bodies past the middleware stack, and detached streams.

:class:`BodyLane` is the outermost layer of the hub's app (in front of Starlette's own error
middleware, for as long as the stack is the hub's own; see ``_HubApp``). It does two things:

* It keeps the ``send`` it was given on a :class:`Lane`, in ``scope[LANE]``. Every middleware of
  the hub, and Starlette's error and exception middleware, only read or change
  ``http.response.start`` and pass body messages through untouched, so an event stream sends
  its body messages on this outer ``send`` directly: six wrapper calls fewer per delivery, and
  when the hub is the server's top-level app, the server's own ``send``, which direct writes
  need (:mod:`ssehub.uvicorn`).
* It runs detached streams. ``GET /events`` sends the response start and the opening comment
  through the whole stack, then leaves the rest of the stream in :attr:`Lane.detached` and
  returns, and the stack unwinds. The lane then runs the stream outside it. An idle stream so
  keeps neither a suspended coroutine frame nor a ``send`` wrapper per middleware: about a
  third of its memory. A middleware that must act when the stream really ends (the metrics'
  open-connections gauge) adds a callback with :meth:`Lane.on_end` instead; the lane calls
  those when the stream is over. Log records of the stream keep its request id.

One scope key holds all of it: the scope lives as long as the stream, and with a few keys
more it would grow from a 32- to a 64-slot table (about 0.8 KiB per connection).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from .._logging import _request_id

__all__ = ["LANE", "BodyLane", "Lane", "lane_of"]

LANE = "ssehub.lane"
"""Scope key: the request's :class:`Lane`."""


class Lane:
    """What the body lane shares with the hub's stack for one request.

    Attributes:
        send: the ``send`` the hub app was given (bodies of event streams go through it).
        detached: the rest of a stream, an ASGI app the lane calls with the request's
            ``scope``, ``receive`` and :attr:`send`, once the stack has returned; or ``None``.
    """

    __slots__ = ("_ended", "detached", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.detached: ASGIApp | None = None
        self._ended: list[Callable[[], object]] | None = None

    def on_end(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the detached stream has ended (however it ended)."""
        if self._ended is None:
            self._ended = []
        self._ended.append(callback)

    def _end(self) -> None:
        callbacks, self._ended = self._ended or [], None
        for callback in callbacks:
            callback()


def lane_of(scope: Scope) -> Lane | None:
    """Return the request's :class:`Lane`, or ``None`` outside the hub's body lane."""
    lane = scope.get(LANE)
    return lane if isinstance(lane, Lane) else None


class BodyLane:
    """The outermost layer of the hub app (see the module's docstring).

    Args:
        app: the hub's middleware stack.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the stack, then the detached stream it left, if any."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = scope[LANE] = Lane(send)
        await self.app(scope, receive, send)
        detached, lane.detached = lane.detached, None
        if detached is None:
            return
        # RequestIdMiddleware has reset its context variable on the way out; the stream's
        # log records must still carry the id.
        token = _request_id.set(scope.get("state", {}).get("request_id"))
        try:
            await detached(scope, receive, send)
        finally:
            _request_id.reset(token)
            lane._end()
