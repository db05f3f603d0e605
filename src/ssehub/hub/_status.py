"""``GET /status`` and ``GET /health`` bodies, built from the broker's statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..broker import Broker

__all__ = ["health_document", "status_document"]


async def status_document(broker: Broker, *, uptime: float) -> dict[str, Any]:
    """Return the ``/status`` JSON document.

    Args:
        broker: the running broker.
        uptime: seconds since the hub started.

    Returns:
        ``{"uptime", "connections", "topics": {name: {"subscribers", "history"}}, "totals"}``.
        ``topics`` lists every topic with subscribers in this process or events in history;
        ``totals`` holds the broker's counters since it started (``published``, ``delivered``,
        ``dropped``, ``shed``) and ``topics``, the number of topics with subscribers.

    Raises:
        BackendUnavailable: the broker's backend cannot report its history sizes.
    """
    topics = await broker.topics()
    stats = broker.statistics()
    return {
        "uptime": round(uptime, 3),
        "connections": stats.subscribers,
        "topics": {
            info.topic: {"subscribers": info.subscribers, "history": info.history}
            for info in topics
        },
        "totals": {
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "shed": stats.shed,
            "topics": stats.topics,
        },
    }


def health_document(*, draining: bool, backend_healthy: bool = True) -> tuple[int, dict[str, str]]:
    """Return the ``/health`` status code and body.

    Args:
        draining: whether shutdown has started.
        backend_healthy: whether the broker's backend answers (a Redis backend that lost
            Redis is not; the memory backend always is).

    Returns:
        ``(200, {"status": "ok"})`` while serving, ``(503, {"status": "draining"})`` after
        shutdown has started, so load balancers stop sending new clients here, and
        ``(200, {"status": "degraded"})`` while the backend is unreachable: publishing and
        resuming answer 503 then, but open streams stay open and go on once the backend is
        back. Still 200, because every hub of a deployment shares the one Redis: taking them
        all out of rotation would cut every client and fix nothing. Alert on "degraded".
    """
    if draining:
        return 503, {"status": "draining"}
    if not backend_healthy:
        return 200, {"status": "degraded"}
    return 200, {"status": "ok"}
