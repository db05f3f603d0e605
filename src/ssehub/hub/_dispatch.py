"""``GET /events`` without a suspended frame per middleware: the hub's explicit dispatcher.

An event stream lives for hours, and while it waits, every ASGI layer between the server and
the stream's pump keeps a suspended coroutine frame and a ``send`` wrapper alive: in the hub's
full Starlette stack (error middleware, request id, metrics, trusted proxies, CORS,
authentication, exception middleware, router, route) that was about 4.5 KB of a 14 KB idle
stream. :class:`HubApp` answers ``GET``/``HEAD /events`` itself instead, applying the same
policies in the same order as function calls, through the very methods the middleware classes
use (built from the same ``Middleware`` declarations, so their settings cannot differ): one
frame and one ``send`` wrapper for all of them. Errors are handled as Starlette's stack
handles them: a ``HubHTTPError`` or ``HTTPException`` through the app's handler, anything else
a plain 500 (when nothing was sent yet) and re-raised for the server to log. With
``--mercure``, the requests ``MercureDispatch`` claims (``/.well-known/mercure``) are
dispatched the same way, with the policies of the middleware outside it (request id, metrics,
trusted proxies) and Mercure's own CORS and tokens.

Every other request goes through Starlette as usual, and so does everything whenever the app
is no longer as ``create_app()`` built it (a middleware or exception handler added, ``debug``
on): the shortcut never skips anything a user added. Middleware that wraps the whole app from
outside (Sentry, OpenTelemetry) wraps the dispatcher too.
``tests/hub/test_hub_dispatch.py`` checks that both paths answer alike.

The lifespan also passes through :class:`HubApp`, which says in one line why the hub could not
start when the reason is ours or the operating system's (see :func:`_lifespan`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import SSEHubError
from .._logging import RequestIdMiddleware, bind_request_id, unbind_request_id
from ._auth import AuthMiddleware
from ._cors import CORSMiddleware, stamp
from ._errors import HubHTTPError, http_exception_handler
from ._mercure import MercureDispatch
from ._metrics import HubMetrics, MetricsMiddleware
from ._proxy import ForwardedMiddleware

__all__ = ["EventsPolicies", "HubApp"]

logger = logging.getLogger("ssehub.hub")

_METHODS: Final = frozenset({"GET", "HEAD"})
# The stack's order, outermost first (hub/_app.py:_middleware); a list in another order, or
# with another class, gets no shortcut. MercureDispatch hands /events on unchanged; the
# requests it claims get the policies of the middleware outside it.
_ORDER: Final = (
    RequestIdMiddleware,
    MetricsMiddleware,
    ForwardedMiddleware,
    MercureDispatch,
    CORSMiddleware,
    AuthMiddleware,
)


@dataclass(frozen=True, slots=True)
class EventsPolicies:
    """The hub middleware's policies, as objects the dispatcher calls in the stack's order."""

    request_ids: RequestIdMiddleware
    forwarded: ForwardedMiddleware
    metrics: MetricsMiddleware | None = None
    mercure: MercureDispatch | None = None
    cors: CORSMiddleware | None = None
    auth: AuthMiddleware | None = None

    @classmethod
    def of(cls, middleware: Sequence[Middleware], endpoint: Any) -> EventsPolicies | None:
        """Instantiate ``middleware`` (the stack's own declarations) as policies.

        Returns:
            The policies, or ``None`` when the list holds a class the dispatcher does not
            know, or known classes in another order: then ``/events`` keeps the full stack.
        """
        found: dict[type, Any] = {}
        for factory, args, kwargs in middleware:
            if factory not in _ORDER or factory in found:
                return None
            found[factory] = factory(endpoint, *args, **kwargs)  # never called as an app
        order = [c for c in _ORDER if c in found]
        if list(found) != order or not {RequestIdMiddleware, ForwardedMiddleware} <= set(found):
            return None
        return cls(
            request_ids=found[RequestIdMiddleware],
            forwarded=found[ForwardedMiddleware],
            metrics=found.get(MetricsMiddleware),
            mercure=found.get(MercureDispatch),
            cors=found.get(CORSMiddleware),
            auth=found.get(AuthMiddleware),
        )


class _Exchange:
    """One ``/events`` request's response side: the one ``send`` wrapper of the dispatcher."""

    __slots__ = (
        "_cors",
        "_metrics",
        "_raw_id",
        "_scope",
        "_send",
        "_started_at",
        "policies",
        "started",
        "status",
        "streaming",
    )

    def __init__(
        self,
        send: Send,
        scope: Scope,
        policies: EventsPolicies,
        raw_id: bytes,
        metrics: HubMetrics | None,
        *,
        cors: bool,
    ) -> None:
        self._send = send
        self._scope = scope
        self.policies = policies
        self._raw_id = raw_id
        self._cors = policies.cors.allowed_for(scope) if cors and policies.cors else None
        self._metrics = metrics
        self._started_at = time.perf_counter() if metrics is not None else 0.0
        self.started = False
        self.status = 500  # what the server sends when the app fails before starting
        self.streaming = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            # Innermost policy first, as the stack's wrappers apply them.
            self.started = True
            self.status = message["status"]
            policies = self.policies
            if self._cors is not None:
                stamp(message, self._cors)
            if self._metrics is not None:
                assert policies.metrics is not None
                self.streaming = policies.metrics.started(
                    self._metrics, self._scope, message, self._started_at
                )
            message = policies.request_ids.stamp(message, self._raw_id)
        await self._send(message)

    def finish(self) -> None:
        if self._metrics is not None:
            assert self.policies.metrics is not None
            self.policies.metrics.finished(self._metrics, self._scope, self.status, self.streaming)


class HubApp(Starlette):
    """The hub's Starlette app, answering ``GET``/``HEAD /events`` directly (module doc).

    Args:
        events: the ``/events`` route's endpoint (the same object the route holds): an ASGI
            app whose ``answer(scope, receive, send)`` returns the ASGI app that answers the
            request (the stream, or an error response), which the dispatcher runs itself.
        policies: the middleware's policies, from :meth:`EventsPolicies.of`, or ``None`` to
            send everything through the stack.
        **kwargs: Starlette's arguments.
    """

    def __init__(self, *, events: Any, policies: EventsPolicies | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._events = events
        self._policies = policies
        self._as_built = (list(self.user_middleware), dict(self.exception_handlers))

    def dispatches_events(self) -> bool:
        """Return whether ``/events`` takes the shortcut (the app is as built, not in debug)."""
        middleware, handlers = self._as_built
        return (
            self._policies is not None
            and not self.debug
            and self.user_middleware == middleware
            and self.exception_handlers == handlers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policies = self._policies
        mercure = None
        if scope["type"] == "lifespan":
            await _lifespan(super().__call__, scope, receive, send)
            return
        if scope["type"] != "http" or policies is None:
            await super().__call__(scope, receive, send)
            return
        if policies.mercure is not None and policies.mercure.claim(scope):
            mercure = policies.mercure.mercure  # Mercure's own CORS and tokens, not the hub's
        elif scope["method"] not in _METHODS or _route_path(scope) != "/events":
            await super().__call__(scope, receive, send)  # cheap tests first: POST /publish...
            return
        if not self.dispatches_events():
            await super().__call__(scope, receive, send)
            return
        # The dispatch is inline, not a method: one suspended frame less per idle stream.
        scope["app"] = self
        request_id = policies.request_ids.identify(scope)
        token = bind_request_id(request_id)
        try:
            policies.forwarded.resolve(scope)
            metrics = None if policies.metrics is None else policies.metrics.resolve(scope)
            raw_id = request_id.encode("latin-1")
            exchange = _Exchange(send, scope, policies, raw_id, metrics, cors=mercure is None)
            try:
                if mercure is not None:
                    await mercure(scope, receive, exchange.send)
                    return
                if policies.auth is not None:
                    try:
                        policies.auth.authenticate(scope)
                    except HubHTTPError as exc:
                        await exc.response()(scope, receive, exchange.send)
                        return
                # What Starlette's router records (metrics label the route by it).
                scope["endpoint"] = self._events
                answer = await self._events.answer(scope, receive, exchange.send)
                await answer(scope, receive, exchange.send)
            except Exception as exc:  # noqa: BLE001 - handled as Starlette does, or re-raised
                # Mercure's app sits outside Starlette's exception middleware: only the 500.
                await _failed(exc, scope, receive, send, exchange, handled=mercure is None)
            finally:
                exchange.finish()
        finally:
            unbind_request_id(token)


async def _lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the lifespan, saying in one line why the hub could not start when the reason is
    one of ours or the operating system's (Redis is down, a port is taken).

    Starlette reports any startup failure with the formatted traceback, which servers log
    whole: 65 lines of redis-py internals before the one that matters. The failure message
    is held back until the exception is known (Starlette sends it, then raises at once); any
    other exception keeps its traceback, and so does every failure at debug level.
    """
    held: Message | None = None

    async def holding_send(message: Message) -> None:
        nonlocal held
        if message["type"] == "lifespan.startup.failed":
            held = message
            return
        await send(message)

    try:
        await app(scope, receive, holding_send)
    except BaseException as exc:
        if held is None:
            raise
        if isinstance(exc, SSEHubError | OSError) and not logger.isEnabledFor(logging.DEBUG):
            held = {
                **held,
                "message": f"the hub could not start: {type(exc).__name__}: {exc} (the "
                "traceback: ssehub serve --log-level debug, or DEBUG for the ssehub.hub logger)",
            }
        await send(held)
        raise


def _route_path(scope: Scope) -> str:
    """The path Starlette's router matches: ``path`` without the ``root_path`` it lies under
    (a hub mounted at ``/sse`` sees ``/sse/events`` with root path ``/sse``; ASGI spec)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if (
        root_path
        and path.startswith(root_path)
        and path[len(root_path) : len(root_path) + 1] == "/"
    ):
        return path[len(root_path) :]
    return path


async def _failed(
    exc: Exception,
    scope: Scope,
    receive: Receive,
    send: Send,
    exchange: _Exchange,
    *,
    handled: bool,
) -> None:
    """What Starlette's exception and error middleware do with an exception from the route
    (``handled``: the exception middleware's handlers apply, as to a route's exceptions)."""
    if handled and isinstance(exc, HubHTTPError | HTTPException):
        if exchange.started:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        response = await http_exception_handler(Request(scope, receive), exc)
        await response(scope, receive, exchange.send)
        return
    if not exchange.started:
        # Outside the policies, as ServerErrorMiddleware is outermost: a bare 500.
        await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
    raise exc
