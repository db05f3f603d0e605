"""The hub's body lane: event-stream bodies past the middleware stack, and detached streams.

:class:`BodyLane` is the outermost layer of the hub's app (in front of Starlette's own error
middleware, for as long as the stack is the hub's own; see ``_HubApp``). It does two things:

* It keeps the ``send`` it was given in ``scope[BODY_SEND]``. Every middleware of the hub, and
  Starlette's error and exception middleware, only read or change ``http.response.start`` and
  pass body messages through untouched, so an event stream sends its body messages on this
  outer ``send`` directly: six wrapper calls fewer per delivery, and when the hub is the
  server's top-level app, the server's own ``send``, which direct writes need
  (:mod:`ssehub.uvicorn`).
* It runs detached streams. ``GET /events`` sends the response start and the opening comment
  through the whole stack, then leaves the rest of the stream in ``scope[DETACHED]`` and
  returns, and the stack unwinds. The lane then runs the stream outside it. An idle stream so
  keeps neither a suspended coroutine frame nor a ``send`` wrapper per middleware: about a
  third of its memory. A middleware that must act when the stream really ends (the metrics'
  open-connections gauge) adds a callback to ``scope[DETACHED_END]`` instead; the lane calls
  those when the stream is over. Log records of the stream keep its request id.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .._logging import _request_id

__all__ = ["BODY_SEND", "DETACHED", "DETACHED_END", "BodyLane"]

BODY_SEND = "ssehub.body_send"
"""Scope key: the ``send`` the hub app was given."""

DETACHED = "ssehub.detached"
"""Scope key: the rest of a stream, an ASGI app the lane calls with the request's ``scope``,
``receive`` and the lane's own ``send``."""

DETACHED_END = "ssehub.detached_end"
"""Scope key: callbacks to call once a detached stream has ended."""


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
        scope[BODY_SEND] = send
        await self.app(scope, receive, send)
        detached: ASGIApp | None = scope.pop(DETACHED, None)
        if detached is None:
            return
        # RequestIdMiddleware has reset its context variable on the way out; the stream's
        # log records must still carry the id.
        token = _request_id.set(scope.get("state", {}).get("request_id"))
        try:
            await detached(scope, receive, send)
        finally:
            _request_id.reset(token)
            for callback in scope.pop(DETACHED_END, ()):
                callback()
