"""The hub's ASGI app: ``create_app(settings) -> Starlette``.

Plain Starlette routes (not FastAPI: the publish path is measured, and Starlette's routing and
request handling are leaner). :func:`create_app` assembles the routes and the middleware from
the settings in two small functions, :func:`_routes` and :func:`_middleware`, which are where
later features plug in: authentication (JWT / API keys) as middleware, ``/metrics``, a dashboard
at ``/`` and channel routes as more routes, each switched on by a setting.

Used standalone (``ssehub serve``) the app's lifespan enters the broker it built from the
settings. Mounted inside another app, sub-app lifespans do not run (Starlette's ``Mount`` does
not forward them), so pass ``broker=`` and enter that broker in the outer app's lifespan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._exceptions import (
    BackendUnavailable,
    BrokerClosed,
    BrokerError,
    EventTooLarge,
    EventValidationError,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    InvalidTopic,
    PublishOutcomeUnknown,
)
from .._logging import RequestIdMiddleware
from .._response._shutdown import register as register_for_shutdown
from .._response._shutdown import unregister as unregister_for_shutdown
from ..broker import Broker, Publication, StoredEvent
from ..broker.history import HistoryBudget
from ..response import EventSourceResponse
from ._auth import principal_of
from ._body import read_body
from ._channels import channel_routes, with_channels
from ._dashboard import dashboard_routes
from ._dispatch import EventsPolicies, HubApp
from ._errors import HubHTTPError, http_exception_handler
from ._guard import Guard, check_last_event_id, split_private
from ._limits import check_pattern_count
from ._mercure import MercureApp, MercureDispatch
from ._metrics import MetricsMiddleware, metrics_routes
from ._openapi import DOCS_HTML, openapi_document
from ._publish import (
    PublishRequest,
    check_content_type,
    check_topics,
    idempotency_keys,
    parse_publish_body,
    scoped_keys,
)
from ._settings import HubSettings, options
from ._settings_checks import unknown_variables
from ._state import HubState
from ._stream import HubStream

if TYPE_CHECKING:
    pass
from ._status import (
    backend_check,
    health_document,
    liveness_document,
    readiness_document,
    status_document,
    topic_filter_for,
)

__all__ = ["RESET_HEADER", "HubState", "create_app"]

logger = logging.getLogger("ssehub.hub")

RESET_HEADER = "SSEHub-Reset"
"""Response header of ``GET /events`` when the ``Last-Event-ID`` could not be resumed; its value
is the reason (``malformed``, ``unknown`` or ``expired``), never the client's id."""

_EVENT_FIELDS = {"data": "invalid_data", "event": "invalid_event", "retry": "invalid_retry"}


def _published(broker: Broker, stored: StoredEvent) -> dict[str, Any]:
    return {
        "id": stored.id,
        "topics": list(stored.topics),
        "subscribers": broker.subscriber_count(stored.topics),
    }


def _broker_error(exc: Exception) -> HubHTTPError:
    """Map a broker exception to the hub's JSON error (input was validated before, so these
    are second lines of defence, or the broker being unavailable)."""
    if isinstance(exc, InvalidTopic):
        code = "too_many_topics" if exc.reason.startswith("too many") else "invalid_topic"
        return HubHTTPError(code, f"invalid topic: {exc.reason}")
    if isinstance(exc, EventValidationError):
        return HubHTTPError(_EVENT_FIELDS.get(exc.field, "invalid_event"), str(exc))
    if isinstance(exc, EventTooLarge):  # max_event_size: nothing of the request was stored
        return HubHTTPError(
            "event_too_large",
            f"an event is larger than {exc.limit} bytes once encoded (max_event_size)",
        )
    if isinstance(exc, InvalidIdempotencyKey):
        return HubHTTPError("invalid_idempotency_key", str(exc))
    if isinstance(exc, IdempotencyKeyReused):
        return HubHTTPError("idempotency_key_reused", str(exc))
    if isinstance(exc, PublishOutcomeUnknown):
        # -- scaling: sent, not answered: maybe stored. Not 503, which promises it was not.
        return HubHTTPError(
            "outcome_unknown",
            "the backend did not answer: the event may be published; retry with the same "
            "Idempotency-Key (it stores nothing new if the first attempt was published)",
        )
    if isinstance(exc, BackendUnavailable):
        return HubHTTPError("unavailable", "the broker's backend cannot be reached")
    return HubHTTPError("unavailable", "the broker is not running")


class _Endpoints:
    """The HTTP endpoints of one hub (methods bound to its :class:`HubState`)."""

    def __init__(self, hub: HubState) -> None:
        self.hub = hub

    async def events(self, request: Request) -> Response | HubStream:
        hub = self.hub
        settings = hub.settings
        try:
            topics = check_topics(request.query_params.getlist("topic"), max_topics=hub.max_topics)
            check_pattern_count(topics, hub.max_patterns)
            # The header wins over the query parameter: browsers send the header on every
            # reconnect with the id they last saw, while the query value is fixed in the URL.
            last_event_id = request.headers.get("last-event-id") or request.query_params.get(
                "lastEventId"
            )
            # The one not used is bounded too, as the OpenAPI document says of each parameter.
            check_last_event_id(
                request.query_params.get("lastEventId"), settings.max_last_event_id_length
            )
            # -- security: refused before anything is opened
            principal = hub.guard.authorize_subscribe(request.scope, topics, last_event_id)
            broker = hub.require_broker()
            lease = hub.guard.acquire(request.scope, principal)
            if request.method == "HEAD":
                # The same status and headers as GET (RFC 9110 §9.3.2), so the broker and the
                # connection limit are checked, but nothing is subscribed or held: nothing
                # would consume it. EventSourceResponse answers HEAD without its content.
                lease.release()
                return EventSourceResponse((), ping=0)
            try:
                try:
                    # Registered here, before the response (and its headers) exists: an event
                    # published once the client has seen the headers is already queued for it.
                    # -- security: private events the principal may not read are never queued
                    subscription = broker.subscribe(
                        topics,
                        last_event_id,
                        visible=principal.may_read,
                        expires_at=hub.guard.deadline(principal.expires_at),
                    )
                except (InvalidTopic, BrokerClosed) as exc:
                    raise _broker_error(exc) from None
                try:
                    # Fetch the replay now so the reset reason is known for the headers.
                    await subscription.prepare()
                except BaseException as exc:
                    subscription.close()
                    if isinstance(exc, BackendUnavailable):
                        raise _broker_error(exc) from None
                    raise
            except BaseException:
                lease.release()
                raise
        except HubHTTPError as exc:
            return exc.response()
        headers = {}
        if subscription.reset is not None:
            headers[RESET_HEADER] = subscription.reset.value
        response = EventSourceResponse(
            subscription,
            headers=headers,
            ping=settings.ping,
            send_timeout=settings.send_timeout,
            # On a signal, as when the hub drains: what is queued still gets a moment to go out.
            shutdown_grace_period=EventSourceResponse.SHUTDOWN_SEND_TIMEOUT,
        )
        return HubStream(response, subscription, hub, lease)

    async def publish(self, request: Request) -> Response:
        hub = self.hub
        settings = hub.settings
        try:
            # -- security: a client without a token costs no body read or parse
            hub.guard.require_publisher(request.scope)
            check_content_type(request.headers.get("content-type"))
            try:
                body = await read_body(request, settings.max_body_size)
            except ClientDisconnect:
                # Nobody is left to read an answer; nothing was published.
                return Response(status_code=400)
            # -- security: private flags, then authorization and rate, before anything is published
            body, flags = split_private(body)
            requests, batch = parse_publish_body(
                body, max_topics=hub.max_topics, max_batch=settings.max_batch
            )
            private = flags or [False] * len(requests)
            keys = idempotency_keys(request.headers.getlist("idempotency-key"), requests, batch)
            hub.guard.authorize_publish(request.scope, requests, private)
            # -- security: a key names a publication of this publisher only (another tenant's
            # "order-42" must neither collide with nor reveal this one)
            keys = scoped_keys(principal_of(request.scope), keys)
            broker = hub.require_broker()
            try:
                if not batch:
                    stored_one = await _publish_one(broker, requests[0], private[0], keys[0])
                    return JSONResponse(_published(broker, stored_one))
                stored = await broker.publish_many(
                    [
                        Publication(r.topics, r.data, r.event, r.retry, p, k)
                        for r, p, k in zip(requests, private, keys, strict=True)
                    ]
                )
            except (InvalidTopic, EventValidationError, EventTooLarge, BrokerError) as exc:
                raise _broker_error(exc) from None
            return JSONResponse({"events": [_published(broker, item) for item in stored]})
        except HubHTTPError as exc:
            return exc.response()

    async def status(self, request: Request) -> Response:
        hub = self.hub
        try:
            hub.guard.authorize_status(request.scope)  # -- security
            broker = hub.require_broker()
            try:
                # -- security: only the topics the caller may subscribe to (admins: all)
                visible = topic_filter_for(request.scope, auth=hub.guard.enabled)
                document = await status_document(broker, uptime=hub.uptime, visible=visible)
            except BackendUnavailable as exc:
                raise _broker_error(exc) from None
        except HubHTTPError as exc:
            return exc.response()
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def health(self, request: Request) -> Response:
        hub = self.hub
        # -- scaling: the backend is asked (Redis PING, 1 s, one at a time, cached 1 s)
        healthy = hub.draining or await backend_check(hub.broker).healthy()
        status_code, document = health_document(draining=hub.draining, backend_healthy=healthy)
        if status_code == 200 and not hub.broker.running:
            status_code, document = 503, {"status": "unavailable"}
        return JSONResponse(
            document, status_code=status_code, headers={"Cache-Control": "no-store"}
        )

    async def livez(self, request: Request) -> Response:
        status_code, document = liveness_document()
        return JSONResponse(
            document, status_code=status_code, headers={"Cache-Control": "no-store"}
        )

    async def readyz(self, request: Request) -> Response:
        hub = self.hub
        broker = hub.broker
        ready = hub.draining or await backend_check(broker).healthy()
        status_code, document = readiness_document(
            draining=hub.draining, running=broker.running, backend_healthy=ready
        )
        return JSONResponse(
            document, status_code=status_code, headers={"Cache-Control": "no-store"}
        )

    async def openapi(self, request: Request) -> Response:
        root_path = request.scope.get("root_path", "") or "/"
        return JSONResponse(openapi_document(self.hub.settings, server_url=root_path))

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(
            DOCS_HTML,
            headers={
                # The page loads nothing from elsewhere; say so, so nothing injected could.
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'",
            },
        )


async def _publish_one(
    broker: Broker, request: PublishRequest, private: bool, key: str | None
) -> StoredEvent:
    return await broker.publish(
        request.topics,
        request.data,
        event=request.event,
        retry=request.retry,
        private=private,
        idempotency_key=key,
    )


class _EventsRoute:
    """``GET /events`` as a plain ASGI app rather than a function endpoint.

    Starlette wraps a function endpoint in per-request closures (exception handling, the
    ``Request``) that stay alive as long as the response runs: for an event stream that is
    its whole life. Errors are answered by the endpoint itself, and anything unexpected still
    reaches the app's exception middleware: the stream runs inside the whole stack.
    """

    def __init__(self, endpoints: _Endpoints) -> None:
        self._endpoints = endpoints

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> ASGIApp:
        """What answers the request: a :class:`HubStream`, or an error response."""
        return await self._endpoints.events(Request(scope, receive, send))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The router's way in; the hub's dispatcher calls answer() and runs the answer itself,
        # one suspended frame less per idle stream (hub/_dispatch.py).
        answer = await self.answer(scope, receive, send)
        await answer(scope, receive, send)


def _routes(endpoints: _Endpoints, settings: HubSettings, events: ASGIApp) -> list[BaseRoute]:
    """The hub's routes. Later features add theirs here, each gated by a setting: ``/metrics``
    (Prometheus), the dashboard at ``/``, channel routes. ``tests/hub/test_openapi.py`` makes
    sure the OpenAPI document keeps describing exactly these."""
    routes: list[BaseRoute] = [
        Route("/events", events, methods=["GET"]),
        Route("/publish", endpoints.publish, methods=["POST"]),
        Route("/status", endpoints.status, methods=["GET"]),
        Route("/health", endpoints.health, methods=["GET"]),
        Route("/livez", endpoints.livez, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
    ]
    if settings.docs:
        routes += [
            Route("/openapi.json", endpoints.openapi, methods=["GET"]),
            Route("/docs", endpoints.docs, methods=["GET"]),
        ]
    # -- channels: routes added here
    if endpoints.hub.channels is not None:
        routes += channel_routes(endpoints.hub.channels)
    # -- operations (metrics, dashboard): routes added here
    if settings.metrics:
        routes += metrics_routes(endpoints.hub)
    if settings.dashboard:
        routes += dashboard_routes(endpoints.hub)
    return routes


def _middleware(settings: HubSettings, guard: Guard, hub: HubState) -> list[Middleware]:
    """The hub's middleware stack, outermost first: client address behind trusted proxies,
    (Mercure's routes leave here, with ``--mercure``), CORS, then authentication (which
    stores the principal in the scope)."""
    middleware: list[Middleware] = []
    # -- security (CORS, auth, limits): middleware added here, outermost first
    security = guard.middleware()
    # -- Mercure: its own CORS and tokens, after the trusted proxies (ssehub.hub._mercure)
    mercure = [Middleware(MercureDispatch, mercure=MercureApp(hub))] if settings.mercure else []
    middleware += security[:1] + mercure + security[1:]
    # -- operations (request ids, metrics): middleware added here
    # Outermost of all, so that requests refused by the middleware above are counted and
    # logged with their request id too.
    middleware[:0] = [Middleware(RequestIdMiddleware)]
    if settings.metrics:
        middleware.insert(1, Middleware(MetricsMiddleware))
    return middleware


def _build_broker(settings: HubSettings) -> Broker:
    return Broker(
        settings.broker,
        history_size=settings.history,
        history_ttl=settings.history_ttl,
        queue_size=settings.queue_size,
        overflow=settings.slow_policy,
        max_connection_age=settings.max_connection_age,
        max_topics_per_subscription=settings.max_topics,
        max_patterns_per_subscription=settings.max_patterns,
        budget=HistoryBudget.of(settings),
    )


def create_app(settings: HubSettings | None = None, *, broker: Broker | None = None) -> Starlette:
    """Build the hub's ASGI app.

    Args:
        settings: the hub's settings. By default they are read from the ``SSEHUB_<NAME>``
            environment variables, as ``ssehub serve`` reads them
            (:meth:`HubSettings.from_environment`), so a hub run by any ASGI server
            (``hypercorn 'ssehub.hub:create_app()'``) honours them, and an ``SSEHUB_*``
            variable that is no setting is named in a warning (logger ``ssehub.hub``);
            settings given here win, and the environment is not read at all. Server options
            (host, port, workers, log level, grace period) are used by ``ssehub serve``, not
            by the app.
        broker: a broker you manage: enter it yourself (``async with broker:``) before the app
            serves requests. Without it, the app builds one from ``settings`` and its lifespan
            enters and closes it.

    Returns:
        A Starlette app serving ``GET /events``, ``POST /publish``, ``GET /status``,
        ``GET /health``, ``GET /livez``, ``GET /readyz`` and, unless ``settings.docs`` is
        false, ``GET /openapi.json`` and ``GET /docs``. ``app.state.hub`` is its :class:`HubState`.

    Raises:
        ConfigurationError: the settings name an unknown broker backend; or, without
            settings, an ``SSEHUB_*`` variable is invalid (the message names it).
        MissingDependency: the broker backend needs an extra that is not installed.
    """
    if settings is None:
        settings = HubSettings.from_environment()
        known = [spec.env for spec in options()]
        for warning in unknown_variables(os.environ, known):
            logger.warning("%s", warning)
    owns_broker = broker is None
    hub = HubState(settings, broker or _build_broker(settings), owns_broker=owns_broker)
    endpoints = _Endpoints(hub)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # SIGINT/SIGTERM drain the hub under any server (``/health`` answers "draining" while
        # the streams end), as ``ssehub serve``'s own shutdown does (see _response/_shutdown.py).
        if register_for_shutdown(hub.drain):
            hub.drain()
        # Streams end (each with a clean end of body) before the broker closes and before the
        # lifespan's shutdown completes: a hub stream's drain takes at most its grace period
        # and its final send's bound.
        ending = 2 * EventSourceResponse.SHUTDOWN_SEND_TIMEOUT + 0.5
        try:
            if not owns_broker:
                yield
                return
            async with hub.broker:
                hub._started_now()
                try:
                    yield
                finally:
                    await hub.close_streams(ending)
        finally:
            await hub.close_streams(ending)
            unregister_for_shutdown(hub.drain)

    # -- channels: the channels and the socket ingest run inside the lifespan
    lifespan = with_channels(hub, lifespan)  # type: ignore[assignment]

    events = _EventsRoute(endpoints)
    middleware = _middleware(settings, hub.guard, hub)
    app = HubApp(
        events=events,
        policies=EventsPolicies.of(middleware, events),
        routes=_routes(endpoints, settings, events),
        middleware=middleware,
        exception_handlers={
            HTTPException: http_exception_handler,
            HubHTTPError: http_exception_handler,
        },
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app
