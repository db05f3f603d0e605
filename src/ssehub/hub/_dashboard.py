"""The dashboard: one static page at ``/`` and the small JSON document it polls.

The page (``static/dashboard.html``, shipped as package data) has no build step and loads
nothing from elsewhere. Its live parts use what the hub already serves:

- the tail of a topic reads ``/events`` with ``fetch`` and parses the stream in the page (the
  WHATWG rules, as :class:`ssehub.wire.EventParser` does; a browser test checks that they agree),
  reconnecting with ``Last-Event-ID``. Not ``EventSource``: it hands an event with an ``event:``
  name only to a listener for that name, and has no catch-all, so the tail would miss every
  named event; this way it shows every event of the topic and its filters only narrow that;
- the publish form posts to ``/publish``;
- everything else (topics, subscriber counts, history sizes, per-topic event rates, totals)
  comes from ``GET /dashboard/stats``, polled every 2 s.

Why polling and not a stats stream: a reserved topic would put statistics into history and the
backend (Redis) and run a publisher task per hub even when nobody looks; a poll costs nothing
while no page is open, one cheap request per open page every 2 s otherwise, and its numbers are
those of the hub that answers. ``/status`` is not enough on its own: the page needs per-topic
event counters (``TopicInfo.events``) to draw rates, and a bound on the topics listed.

The page's inline script and style are allowed by their SHA-256 hashes in a strict
``Content-Security-Policy`` (no ``unsafe-inline``, nothing from other origins, no framing), and it
renders every value with ``textContent``, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._exceptions import BackendUnavailable
from ._errors import HubHTTPError
from ._status import backend_check, listed_topics, topic_filter_for

if TYPE_CHECKING:
    from ._state import HubState

__all__ = ["DASHBOARD_MAX_TOPICS", "dashboard_page", "dashboard_routes", "dashboard_stats"]

DASHBOARD_MAX_TOPICS: Final = 200
"""Topics listed in ``/dashboard/stats`` (busiest first): a table a person can read, and a
response that stays small on a hub with many thousands of topics."""

_INLINE: Final = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


class _ProcessId:
    """``<pid>-<random>``: unique per process, also in a child forked after import."""

    def __init__(self) -> None:
        self._pid = -1
        self._value = ""

    def get(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._value = pid, f"{pid}-{secrets.token_hex(4)}"
        return self._value


_PROCESS: Final = _ProcessId()


@cache
def dashboard_page() -> tuple[bytes, str]:
    """Return the page and its ``Content-Security-Policy`` (read once, then cached).

    Returns:
        ``(html, policy)``: the page's bytes and a policy that allows exactly its inline
        script and style (by hash), requests to the hub itself, and nothing else.
    """
    html = resources.files("ssehub.hub").joinpath("static/dashboard.html").read_bytes()
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html.decode("utf-8")):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            f"style-src {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return html, policy


async def dashboard_stats(
    hub: HubState, *, visible: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """Return the document ``GET /dashboard/stats`` serves.

    Args:
        hub: the running hub.
        visible: which topics the caller may see (``_status.topic_filter``); ``None``: all.

    Returns:
        ``{"process", "uptime", "draining", "backend_up", "connections", "subscribers",
        "topic_count", "topics", "totals"}``: ``process`` names the hub process that answered
        (counters are per process, so with ``--workers`` the page compares samples of one
        process only); ``connections`` counts the open SSE connections, topic streams on
        ``/events`` and channel listener streams alike (see :func:`_open_streams`);
        ``subscribers`` the broker's subscriptions (topic streams), which the topics'
        subscriber counts add up to for single-topic streams (a pattern subscription counts
        here, under no topic: ``Broker.patterns``);
        ``topics`` maps at most :data:`DASHBOARD_MAX_TOPICS` names (most
        subscribers first, then most events) to ``{"subscribers", "history", "events"}``,
        where ``events`` counts events fanned out on the topic here since it gained its first
        subscriber; ``totals`` holds the broker's counters. With ``visible``, ``topics`` and
        ``topic_count`` cover only the topics it accepts, and ``hidden_topics`` counts the
        others (never named); ``subscribers``, ``connections`` and ``totals`` stay
        process-wide aggregates. ``backend_up`` is the shared backend check
        (``_status.BackendCheck``: Redis ``PING``, cached for a second).

    Raises:
        HubHTTPError: ``unavailable`` (503) when the broker is not running or its backend
            cannot be reached.
    """
    broker = hub.require_broker()
    backend_up = await backend_check(broker).healthy()
    try:
        every_topic = await broker.topics()
    except BackendUnavailable:
        raise HubHTTPError("unavailable", "the broker's backend cannot be reached") from None
    topics, hidden = listed_topics(every_topic, visible)
    stats = broker.statistics()
    connections = _open_streams(hub, stats.subscribers)
    busiest = sorted(topics, key=lambda info: (-info.subscribers, -info.events, info.topic))
    shown = sorted(busiest[:DASHBOARD_MAX_TOPICS], key=lambda info: info.topic)
    document: dict[str, Any] = {
        "process": _PROCESS.get(),
        "uptime": round(hub.uptime, 3),
        "draining": hub.draining,
        "backend_up": backend_up,
        "connections": connections,
        "subscribers": stats.subscribers,
        "topic_count": len(topics),
        "topics": {
            info.topic: {
                "subscribers": info.subscribers,
                "history": info.history,
                "events": info.events,
            }
            for info in shown
        },
        "totals": {
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "shed": stats.shed,
            "replays": stats.replays,
            "resets": stats.resets,
        },
    }
    if visible is not None:
        document["hidden_topics"] = hidden
    return document


def _open_streams(hub: HubState, subscribers: int) -> int:
    """Return the open SSE connections of this process: topic and channel listener streams.

    With metrics on (the default) this is the ``ssehub_open_connections`` gauge, so the
    dashboard and ``/metrics`` agree: every ``text/event-stream`` response in progress, which
    includes channel listener streams (each channel has a broker of its own, so the hub
    broker's ``subscribers`` never sees them). With metrics off it is ``subscribers`` plus
    the channel listeners a stream is consuming now.
    """
    if hub.settings.metrics:
        from ._metrics import metrics_for

        for metric in metrics_for(hub).open_connections.collect():
            for sample in metric.samples:
                return int(sample.value)
    channels = hub.channels
    listening = 0
    if channels is not None and channels.running:
        for channel in channels.registry.list():
            for listener_id in channel.listener_ids():
                listening += channel.get_listener(listener_id).streaming
    return subscribers + listening


def dashboard_routes(hub: HubState) -> list[BaseRoute]:
    """Return the dashboard's routes: ``GET /`` and ``GET /dashboard/stats``.

    With authentication on, both need a credential, as ``/status`` does; a browser sends it
    as the hub's auth cookie, which also reaches the page's ``fetch`` requests (the tail's too).
    The stats then list only the topics the credential's ``subscribe`` grant covers (every
    topic for ``*``), like ``/status``.

    Args:
        hub: the hub the dashboard shows.
    """

    async def page(request: Request) -> Response:
        try:
            hub.guard.authorize_status(request.scope)  # with auth on: a credential
        except HubHTTPError as exc:
            return exc.response()
        html, policy = dashboard_page()
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    async def stats(request: Request) -> Response:
        try:
            hub.guard.authorize_status(request.scope)
            # -- security: only the topics the caller may subscribe to (admins: all)
            visible = topic_filter_for(request.scope, auth=hub.guard.enabled)
            document = await dashboard_stats(hub, visible=visible)
        except HubHTTPError as exc:
            return exc.response()
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    return [
        Route("/", page, methods=["GET"]),
        Route("/dashboard/stats", stats, methods=["GET"]),
    ]
