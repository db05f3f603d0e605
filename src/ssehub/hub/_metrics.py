"""``GET /metrics``: the hub in Prometheus text format, from its own registry.

Most numbers are read from the broker's statistics at scrape time by a custom collector, so
publishing and fan-out pay nothing for them. Only what the broker cannot know is counted as it
happens, by :class:`MetricsMiddleware`: open event streams, HTTP requests by route, and the
publish latency a publisher sees. Every app has its own ``CollectorRegistry`` (never the global
one), so several hubs in one process, or in one test run, do not mix their numbers.

Label cardinality is bounded: no per-topic labels; routes are the app's route templates (an
unmatched path is ``other``), methods a fixed set, status codes as sent (a few dozen at most).

No per-topic labels is also the confidentiality rule: a scrape has no reader whose grants could
filter the list (Prometheus holds one credential for every target, and keeps series for weeks),
and a topic name can itself be a secret (``users/alice/orders``). So metrics name no topic;
per-topic numbers are in ``/status`` and ``/dashboard/stats``, which list only the topics the
caller may subscribe to. ``ssehub_topics`` is a count.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..__about__ import __version__
from .._exceptions import BackendUnavailable, MissingDependency
from ..backends.base import history_usage
from ._errors import HubHTTPError
from ._status import backend_check

if TYPE_CHECKING:
    from ..broker import Broker
    from ._state import HubState

__all__ = ["ROUTE_SCOPE_KEY", "HubMetrics", "MetricsMiddleware", "metrics_for", "metrics_routes"]

_MERCURE: Final = "/.well-known/mercure"
_MERCURE_PUBLISH: Final = "POST /.well-known/mercure"

ROUTE_SCOPE_KEY: Final = "ssehub.route"
"""Scope key naming the route of a request served outside the router (Mercure's, set by
``ssehub.hub._mercure.MercureDispatch``): its label instead of ``other``."""

PUBLISH_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Seconds. From 0.5 ms (an in-memory publish on loopback) to 2.5 s (a struggling Redis)."""

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_EVENT_STREAM: Final = b"text/event-stream"

_registry: weakref.WeakKeyDictionary[HubState, HubMetrics] = weakref.WeakKeyDictionary()


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - the test environment has the extra
        raise MissingDependency("prometheus-client", "hub") from exc
    return prometheus_client


class _BrokerCollector:
    """Reads the hub's broker and state at scrape time (the ``Collector`` protocol)."""

    def __init__(self, hub: HubState) -> None:
        self._hub = weakref.ref(hub)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        hub = self._hub()
        if hub is None:
            return
        broker = hub.broker
        stats = broker.statistics()
        info = GaugeMetricFamily("ssehub_info", "The hub's version (always 1).", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "ssehub_subscribers",
            "Open broker subscriptions (streams and listeners).",
            stats.subscribers,
        )
        yield GaugeMetricFamily(
            "ssehub_topics", "Topics with at least one subscriber in this process.", stats.topics
        )
        yield GaugeMetricFamily(
            "ssehub_history_bytes",
            "Bytes of history held, each event once (memory backend: in this process; Redis: "
            "its topic streams, read at each scrape).",
            stats.history_bytes,
        )
        counters = (
            ("ssehub_events_published", "Events published through this hub.", stats.published),
            ("ssehub_events_delivered", "Events handed to subscribers.", stats.delivered),
            ("ssehub_events_dropped", "Events dropped for slow consumers.", stats.dropped),
            (
                "ssehub_slow_consumer_disconnects",
                "Subscriptions ended because they fell behind (the disconnect policy).",
                stats.shed,
            ),
            ("ssehub_replays", "Last-Event-ID resumes served from history.", stats.replays),
            (
                "ssehub_resets",
                "Last-Event-ID values that could not be resumed (malformed, unknown, expired).",
                stats.resets,
            ),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value)
        healthy = bool(getattr(broker.backend, "healthy", True))
        # The scrape has just run the shared check (HubMetrics.endpoint): its answer is fresh.
        answered = backend_check(broker).last_answer is not False
        yield GaugeMetricFamily(
            "ssehub_backend_up",
            "1 when the broker runs and its backend answers (Redis PING within 1 s), else 0.",
            int(broker.running and healthy and answered),
        )
        yield GaugeMetricFamily(
            "ssehub_draining", "1 once shutdown has started, else 0.", int(hub.draining)
        )
        yield GaugeMetricFamily(
            "ssehub_uptime_seconds", "Seconds since the hub started.", hub.uptime
        )


class HubMetrics:
    """The metrics of one hub: its registry, the scrape-time collector and the instruments.

    Args:
        hub: the hub the numbers describe.

    Attributes:
        registry: the app's own ``CollectorRegistry``.

    Raises:
        MissingDependency: prometheus-client (the ``hub`` extra) is not installed.
    """

    def __init__(self, hub: HubState) -> None:
        prometheus = _prometheus()
        self._guard = hub.guard
        self._broker = weakref.ref(hub.broker)
        registry = prometheus.CollectorRegistry(auto_describe=True)
        self.registry = registry
        registry.register(_BrokerCollector(hub))
        # Process CPU, memory and file descriptors, as the global registry would have them.
        prometheus.ProcessCollector(registry=registry)
        self.open_connections = prometheus.Gauge(
            "ssehub_open_connections",
            "Open event streams (responses of type text/event-stream in progress).",
            registry=registry,
        )
        self.connections = prometheus.Counter(
            "ssehub_connections",
            "Event streams opened.",
            registry=registry,
        )
        self.requests = prometheus.Counter(
            "ssehub_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.publish_latency = prometheus.Histogram(
            "ssehub_publish_duration_seconds",
            "POST /publish: seconds from the request to the response (parse, store, fan-out).",
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        )
        self._choose_encoder = prometheus.exposition.choose_encoder

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """Return the current metrics and their content type.

        Args:
            accept: the scraper's ``Accept`` header: OpenMetrics when it asks for it, else the
                Prometheus text format 0.0.4 that every scraper reads.

        Returns:
            ``(body, content_type)``.
        """
        encoder, content_type = self._choose_encoder(accept)
        data: bytes = encoder(self.registry)
        return data, content_type

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics`` (with authentication on, it needs a credential, as ``/status``)."""
        try:
            self._guard.authorize_status(request.scope)
        except HubHTTPError as exc:
            return exc.response()
        broker = self._broker()
        if broker is not None:
            await backend_check(broker).healthy()  # for ssehub_backend_up; at most 1 s
            await _refresh_history_bytes(broker)
        body, content_type = self.render(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


async def _refresh_history_bytes(broker: Broker) -> None:
    """For ``ssehub_history_bytes``: a shared backend (Redis) counts its history's bytes in
    the store, and reads them when asked (one ``HGET``); an unanswered one keeps the last."""
    if not broker.running:
        return
    with anyio.move_on_after(1.0):
        try:
            await history_usage(broker.backend, ())
        except BackendUnavailable:
            pass


def metrics_for(hub: HubState) -> HubMetrics:
    """Return the :class:`HubMetrics` of ``hub``, creating them on first use.

    Args:
        hub: a hub's state.

    Raises:
        MissingDependency: prometheus-client (the ``hub`` extra) is not installed.
    """
    metrics = _registry.get(hub)
    if metrics is None:
        metrics = _registry[hub] = HubMetrics(hub)
    return metrics


def metrics_routes(hub: HubState) -> list[BaseRoute]:
    """Return the ``/metrics`` route of ``hub``.

    Raises:
        MissingDependency: prometheus-client (the ``hub`` extra) is not installed.
    """
    return [Route("/metrics", metrics_for(hub).endpoint, methods=["GET"])]


class MetricsMiddleware:
    """ASGI middleware counting what the broker cannot see: requests, streams, publish latency.

    The hub is found through ``scope["app"].state.hub`` (Starlette sets it before its
    middleware runs), so the middleware needs no arguments; apps without a hub pass through.

    Args:
        app: the wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._metrics: HubMetrics | None = None
        self._routes: dict[Any, str] = {}
        # Labelled children by (route, method, status): ``labels()`` costs a lock and a tuple
        # per call, a dict hit does not. Bounded like the labels themselves.
        self._children: dict[tuple[str, str, int], Any] = {}

    def resolve(self, scope: Scope) -> HubMetrics | None:
        """Return the metrics of the hub serving ``scope`` (``None`` for apps without one)."""
        if self._metrics is None:
            owner = scope.get("app")
            hub = getattr(getattr(owner, "state", None), "hub", None)
            if hub is None or not hub.settings.metrics:
                return None
            self._metrics = metrics_for(hub)
            self._routes = {
                route.endpoint: route.path
                for route in getattr(owner, "routes", ())
                if isinstance(route, Route)
            }
        return self._metrics

    def _label(self, scope: Scope) -> str:
        route = self._routes.get(scope.get("endpoint"))
        if route is not None:
            return route
        outside: str = scope.get(ROUTE_SCOPE_KEY, "other")
        # Mercure's publish is timed like POST /publish (its publish latency).
        return _MERCURE_PUBLISH if outside == _MERCURE and scope["method"] == "POST" else outside

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection; ``http`` scopes are measured."""
        metrics = self.resolve(scope) if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server sends when the app fails before starting a response
        streaming = False

        async def measured_send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = self.started(metrics, scope, message, started)
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            self.finished(metrics, scope, status, streaming)

    def started(self, metrics: HubMetrics, scope: Scope, message: Message, started: float) -> bool:
        """Record a response start; return whether it opens an event stream (counted open).

        The hub's ``GET /events`` dispatcher (``hub/_dispatch.py``) calls :meth:`resolve`,
        this and :meth:`finished` directly, so its streams are counted as any request is.
        """
        if self._label(scope) in ("/publish", _MERCURE_PUBLISH):
            metrics.publish_latency.observe(time.perf_counter() - started)
        if scope["method"] == "HEAD":
            return False
        for name, value in message.get("headers", ()):
            if name.lower() == b"content-type" and value.startswith(_EVENT_STREAM):
                metrics.connections.inc()
                metrics.open_connections.inc()
                return True
        return False

    def finished(self, metrics: HubMetrics, scope: Scope, status: int, streaming: bool) -> None:
        """Count a finished request (``status`` 500 when no response started)."""
        if streaming:
            metrics.open_connections.dec()
        method = scope["method"] if scope["method"] in _METHODS else "other"
        route = self._label(scope)
        if route == _MERCURE_PUBLISH:
            route = _MERCURE_PUBLISH.partition(" ")[2]
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metrics.requests.labels(route, method, str(status))
        child.inc()
