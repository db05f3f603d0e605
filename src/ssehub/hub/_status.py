"""``/status``, ``/health``, ``/livez``, ``/readyz``: what the hub tells about itself, and to whom.

Two concerns live here, both about telling the truth without saying too much:

- **Confidential status.** Topic names can be secrets (``users/alice/orders``), so ``/status``
  and ``/dashboard/stats`` list only the topics the caller's credential grants for
  subscribing (:func:`topic_filter`); the others are only counted (``hidden_topics``).
- **Health that checks.** ``/health`` and ``/readyz`` ask the backend (Redis: ``PING``) with a
  short timeout, through one :class:`BackendCheck` per broker: one check in flight at a time,
  its answer cached for :data:`HEALTH_CHECK_CACHE` seconds, so a storm of probes costs one
  ``PING``. ``/livez`` never touches the backend.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._auth import principal_of
from ._mercure_subscriptions import SUBSCRIPTIONS_PATH

if TYPE_CHECKING:
    from starlette.types import Scope

    from ..broker import Broker, TopicInfo
    from ._auth import Principal

__all__ = [
    "HEALTH_CHECK_CACHE",
    "HEALTH_CHECK_TIMEOUT",
    "BackendCheck",
    "backend_check",
    "health_document",
    "listed_topics",
    "liveness_document",
    "readiness_document",
    "sees_every_topic",
    "status_document",
    "topic_filter",
    "topic_filter_for",
]

HEALTH_CHECK_TIMEOUT: Final = 1.0
"""Seconds the backend has to answer a health check (Redis: ``PING``). A healthy Redis on a
private network answers in well under a millisecond; one second tells a frozen or unreachable
Redis from a busy one, and keeps a probe's answer inside Kubernetes' default 1 s probe timeout
plus its retry."""

HEALTH_CHECK_CACHE: Final = 1.0
"""Seconds an answer of the backend check is reused (on the broker's clock). With
:data:`HEALTH_CHECK_TIMEOUT` it bounds how stale ``/health`` can be: a backend that freezes just
after a successful check is reported degraded at most 2 s later, by the next request."""

logger = logging.getLogger("ssehub.hub")

_CHECK_GRACE: Final = 1.0
"""Seconds beyond its own timeout that a backend's ``ping`` may take before the hub gives up on
it: a guard against a third-party backend that ignores the timeout, so a probe never hangs."""


# -- GET /status: what a caller may see ------------------------------------------------------


def sees_every_topic(principal: Principal) -> bool:
    """Return whether ``principal`` is an admin for status purposes: its ``subscribe`` grant is
    ``*`` (a JWT with ``"subscribe": ["*"]``, or an API key listed without topic patterns).

    Args:
        principal: the request's principal.
    """
    return "*" in principal.subscribe.patterns


def topic_filter(principal: Principal, *, auth: bool) -> Callable[[str], bool] | None:
    """Return the test a topic must pass to be listed to ``principal``, or ``None`` for all.

    Every topic is listed when authentication is off (anyone may subscribe to anything) and to
    admins (:func:`sees_every_topic`). Otherwise only topics granted by the credential's
    ``subscribe`` patterns are listed. ``--anonymous-subscribe`` does not widen this: it lets a
    client open any topic for its public events, which is not a grant, and a topic holding
    only private events must not be revealed by its name.

    Args:
        principal: the request's principal.
        auth: whether authentication is on.
    """
    if not auth or sees_every_topic(principal):
        return None
    return principal.subscribe.matches


def listed_topics(
    every: list[TopicInfo], visible: Callable[[str], bool] | None
) -> tuple[list[TopicInfo], int]:
    """Return the topics of ``every`` listed to a caller who sees what ``visible`` accepts
    (``None``: every topic), and how many others are hidden from it.

    Mercure's subscription-event topics name a subscriber and its selector, which the Mercure
    subscriptions API guards with its own tokens: they are listed only to a caller whose grants
    accept them, never as part of "every topic" (an admin, or no authentication), and are not
    counted as hidden.
    """
    shown: list[TopicInfo] = []
    hidden = 0
    for info in every:
        if info.topic.startswith(_SUBSCRIPTION_EVENTS):
            if visible is not None and visible(info.topic):
                shown.append(info)
        elif visible is None or visible(info.topic):
            shown.append(info)
        else:
            hidden += 1
    return shown, hidden


_SUBSCRIPTION_EVENTS: Final = SUBSCRIPTIONS_PATH + "/"


def topic_filter_for(scope: Scope, *, auth: bool) -> Callable[[str], bool] | None:
    """:func:`topic_filter` for the principal of a request (``request.scope``)."""
    return topic_filter(principal_of(scope), auth=auth)


async def status_document(
    broker: Broker, *, uptime: float, visible: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """Return the ``/status`` JSON document.

    Args:
        broker: the running broker.
        uptime: seconds since the hub started.
        visible: which topics the caller may see (see :func:`topic_filter`); ``None``: all.

    Returns:
        ``{"uptime", "connections", "topics": {name: {"subscribers", "history"}}, "totals"}``.
        ``topics`` lists every topic with subscribers in this process or events in history
        that ``visible`` accepts; when ``visible`` is given, ``hidden_topics`` counts the
        others (their names are never sent). ``totals`` holds the broker's counters since it
        started (``published``, ``delivered``, ``dropped``, ``shed``) and ``topics``, the
        number of topics with subscribers: process-wide aggregates that name no topic.
        A caller who sees every topic (``visible`` is ``None``: an admin, or no
        authentication) also gets the bytes of history, per topic (``history_bytes``) and
        in all (``totals.history_bytes``): how much of the byte budgets is used.

    Raises:
        BackendUnavailable: the broker's backend cannot report its history sizes.
    """
    shown, hidden = listed_topics(await broker.topics(), visible)
    stats = broker.statistics()
    document: dict[str, Any] = {
        "uptime": round(uptime, 3),
        "connections": stats.subscribers,
        "topics": {
            info.topic: {"subscribers": info.subscribers, "history": info.history} for info in shown
        },
        "totals": {
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "shed": stats.shed,
            "topics": stats.topics,
        },
    }
    if visible is not None:
        document["hidden_topics"] = hidden
    else:  # -- byte budgets: their use, for admins (sizes of others' topics would leak)
        for info in shown:
            document["topics"][info.topic]["history_bytes"] = info.history_bytes
        document["totals"]["history_bytes"] = stats.history_bytes
    return document


# -- the backend check -------------------------------------------------------------------------


class BackendCheck:
    """Whether a broker's backend answers, asked at most once per cache period.

    :meth:`healthy` pings the backend (``Backend.ping``, Redis: ``PING``) with a timeout of
    :data:`HEALTH_CHECK_TIMEOUT` seconds. Concurrent callers share the check in flight, and
    its answer is reused for :data:`HEALTH_CHECK_CACHE` seconds, so any number of probes costs
    one ping per period. A cached answer is dropped early when the backend's own ``healthy``
    flag (no I/O: a failed publish, the Redis reader losing or regaining its connection)
    changes, so a failure seen by real traffic, or a recovery, shows at once.

    A backend without ``ping`` (one written before it was part of the protocol) is judged by
    its ``healthy`` attribute alone (healthy when it has none).

    Args:
        broker: the broker whose backend is checked.
        timeout: seconds the backend has to answer.
        cache: seconds an answer is reused, on the broker's clock.

    Attributes:
        pings: how many times the backend was pinged (a storm of probes should add one).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        timeout: float = HEALTH_CHECK_TIMEOUT,
        cache: float = HEALTH_CHECK_CACHE,
    ) -> None:
        self._broker = weakref.ref(broker)
        self.timeout = timeout
        self.cache = cache
        self.pings = 0
        self._answer: bool | None = None
        self._flag = True  # the backend's ``healthy`` flag when the answer was taken
        self._checked_at = -math.inf
        self._in_flight: anyio.Event | None = None

    @property
    def last_answer(self) -> bool | None:
        """The answer of the last check, or ``None`` before the first (no I/O: for a scrape
        that has just awaited :meth:`healthy`)."""
        return self._answer

    def _cached(self, broker: Broker) -> bool | None:
        if self._answer is None or self._flag != _flag(broker):
            return None
        if broker.clock.time() - self._checked_at >= self.cache:
            return None
        return self._answer

    async def healthy(self) -> bool:
        """Return whether the broker runs and its backend answers (at most one ping at a time).

        Never raises for the backend being away: that is ``False``. A caller cancelled while
        the ping is in flight (a client that hung up) does not cancel it: the ping is bounded
        by its timeout, and the callers waiting for it get its answer.
        """
        broker = self._broker()
        if broker is None or not broker.running:
            return False
        while True:
            answer = self._cached(broker)
            if answer is not None:
                return answer
            in_flight = self._in_flight
            if in_flight is None:
                break
            await in_flight.wait()
            # Loop: the answer is fresh now, unless that check failed unexpectedly; then this
            # caller runs the next one.
        done = self._in_flight = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                fresh = await self._ping(broker)
            self._answer, self._flag = fresh, _flag(broker)
            self._checked_at = broker.clock.time()
        finally:
            self._in_flight = None
            done.set()
        return fresh

    async def _ping(self, broker: Broker) -> bool:
        backend = broker.backend
        ping: Callable[[float], Any] | None = getattr(backend, "ping", None)
        answered = True
        if ping is not None:
            self.pings += 1
            answered = False
            try:
                with anyio.move_on_after(self.timeout + _CHECK_GRACE):
                    answered = bool(await ping(self.timeout))
            except Exception:
                # A health check answers "not healthy", never a 500: whatever the backend
                # raised is the reason, so it goes to the log.
                logger.warning("the backend's health check failed", exc_info=True)
                answered = False
        return answered and _flag(broker) and broker.running


def _flag(broker: Broker) -> bool:
    return bool(getattr(broker.backend, "healthy", True))


_checks: weakref.WeakKeyDictionary[Broker, BackendCheck] = weakref.WeakKeyDictionary()


def backend_check(broker: Broker) -> BackendCheck:
    """Return the :class:`BackendCheck` of ``broker``, shared by every route that asks.

    One per broker, so ``/health``, ``/readyz``, ``/metrics`` and the dashboard (and several
    apps mounted on one broker) share one ping per cache period.

    Args:
        broker: the broker.
    """
    check = _checks.get(broker)
    if check is None:
        check = _checks[broker] = BackendCheck(broker)
    return check


# -- the probe documents -----------------------------------------------------------------------


def health_document(*, draining: bool, backend_healthy: bool = True) -> tuple[int, dict[str, str]]:
    """Return the ``/health`` status code and body.

    Args:
        draining: whether shutdown has started.
        backend_healthy: whether the broker's backend answers (:meth:`BackendCheck.healthy`:
            a Redis that does not answer ``PING`` within a second is not; the memory backend
            always is).

    Returns:
        ``(200, {"status": "ok"})`` while serving, ``(503, {"status": "draining"})`` after
        shutdown has started, so load balancers stop sending new clients here, and
        ``(200, {"status": "degraded"})`` while the backend does not answer: publishing and
        resuming answer 503 then, but open streams stay open and go on once the backend is
        back. Still 200, because every hub of a deployment shares the one Redis: taking them
        all out of rotation would cut every client and fix nothing. Alert on "degraded"; use
        ``/readyz`` where "not ready" must be a 503.
    """
    if draining:
        return 503, {"status": "draining"}
    if not backend_healthy:
        return 200, {"status": "degraded"}
    return 200, {"status": "ok"}


def liveness_document() -> tuple[int, dict[str, str]]:
    """Return the ``/livez`` status code and body: always ``(200, {"status": "alive"})``.

    Answering at all is the proof: the process runs its event loop and serves requests. It
    never touches the backend (a Redis outage must not make an orchestrator restart every
    hub) and stays 200 while draining (a restart then would cut the graceful shutdown short).
    """
    return 200, {"status": "alive"}


def readiness_document(
    *, draining: bool, running: bool, backend_healthy: bool
) -> tuple[int, dict[str, str]]:
    """Return the ``/readyz`` status code and body: 200 only when new clients can be served.

    Args:
        draining: whether shutdown has started.
        running: whether the broker runs.
        backend_healthy: whether the backend answers (:meth:`BackendCheck.healthy`).

    Returns:
        ``(200, {"status": "ready"})``; otherwise 503 with ``"draining"``, ``"unavailable"``
        (the broker is not running) or ``"degraded"`` (the backend does not answer), in that
        order of precedence.
    """
    if draining:
        return 503, {"status": "draining"}
    if not running:
        return 503, {"status": "unavailable"}
    if not backend_healthy:
        return 503, {"status": "degraded"}
    return 200, {"status": "ready"}
