"""The hub's security in one object: middleware, endpoint checks, limits, private delivery.

:class:`Guard` is built from the settings once per app (``app.state.hub.guard``). The endpoints
call it at fixed points, before anything happens, so a refused request leaves no trace:

- ``GET /events``: :meth:`Guard.authorize_subscribe` (topics allowed; a pattern only if the
  grants cover every topic it can match; ``Last-Event-ID`` length), then :meth:`Guard.acquire`
  (connection caps); the subscription is opened with the principal's ``may_read`` as its
  visibility, so private events reach only authorized subscribers, replay included, and the
  stream ends when the credential expires.
- ``POST /publish``: :func:`split_private` takes the ``private`` flags out of the body, then
  :meth:`Guard.authorize_publish` checks topics, private and the publish rate.
- ``GET /status``: :meth:`Guard.authorize_status`.

Channel routes use the same principal (:func:`~ssehub.hub._auth.principal_of`) and the
``may_publish``/``may_subscribe`` rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from starlette.middleware import Middleware

from ..broker.patterns import is_pattern
from ._auth import Authenticator, AuthMiddleware, Principal, authentication_required, principal_of
from ._cors import CORSMiddleware
from ._errors import HubHTTPError
from ._limits import ConnectionLimiter, Lease, RateLimiter, check_topic_lengths
from ._proxy import ForwardedMiddleware, client_address, parse_networks
from ._publish import _load_json

if TYPE_CHECKING:
    from starlette.types import Scope

    from .._clock import Clock
    from ._publish import PublishRequest
    from ._settings import HubSettings

__all__ = ["Guard", "split_private"]

_PRIVATE_KEY: Final = b'"private"'


class Guard:
    """Authentication, authorization and limits of one hub.

    Args:
        settings: the hub's settings.
        clock: the broker's clock (publish rates refill on it; token expiry is timed on it).

    Raises:
        ConfigurationError: the security settings are unusable (missing key, bad file).
    """

    def __init__(self, settings: HubSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.authenticator = Authenticator.from_settings(settings)
        self.connections = ConnectionLimiter(
            total=settings.max_connections,
            per_address=settings.max_connections_per_address,
            per_token=settings.max_connections_per_token,
        )
        self.rates = (
            RateLimiter(rate=settings.publish_rate, burst=settings.publish_burst, clock=clock)
            if settings.publish_rate is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        """Whether authentication is on."""
        return self.authenticator is not None

    def middleware(self) -> list[Middleware]:
        """The security middleware, outermost first: proxies, CORS, authentication."""
        settings = self.settings
        stack = [Middleware(ForwardedMiddleware, trusted=parse_networks(settings.trusted_proxies))]
        if settings.cors_origins:
            stack.append(Middleware(CORSMiddleware, origins=settings.cors_origins))
        if self.authenticator is not None:
            exact = frozenset(o for o in settings.cors_origins if o != "*")
            stack.append(
                Middleware(AuthMiddleware, authenticator=self.authenticator, trusted_origins=exact)
            )
        return stack

    # -- GET /events -----------------------------------------------------------------------

    def authorize_subscribe(
        self, scope: Scope, topics: Sequence[str], last_event_id: str | None
    ) -> Principal:
        """Check a subscription before it exists.

        Returns:
            The request's principal.

        Raises:
            HubHTTPError: ``invalid_topic`` / ``last_event_id_too_long`` (400),
                ``unauthorized`` (401), ``forbidden`` (403).
        """
        check_topic_lengths(topics, self.settings.max_topic_length)
        check_last_event_id(last_event_id, self.settings.max_last_event_id_length)
        principal = principal_of(scope)
        for topic in topics:
            allowed = (
                principal.may_subscribe_pattern(topic)
                if is_pattern(topic)
                else principal.may_subscribe(topic)
            )
            if not allowed:
                if not principal.authenticated:
                    raise authentication_required("subscribing needs a token on this hub")
                raise HubHTTPError("forbidden", f"the token may not subscribe to {topic!r}")
        return principal

    def acquire(self, scope: Scope, principal: Principal) -> Lease:
        """Take a connection place for a new stream.

        Raises:
            HubHTTPError: ``too_many_connections`` (429).
        """
        return self.connections.acquire(client_address(scope), principal.identity)

    def deadline(self, expires_at: float | None) -> float | None:
        """Return when (on the broker's clock) a stream opened with a credential that expires
        at ``expires_at`` (a Unix time, a JWT's ``exp``) must end, or ``None`` if it does not.

        The JWT leeway applies here as it does when the token is checked: a token accepted
        within the leeway after its ``exp`` must not open a stream that ends at once (the
        client would reconnect in a loop until it gets a new token).
        """
        if expires_at is None:
            return None
        remaining = expires_at + self.settings.jwt_leeway - time.time()
        return self.clock.time() + remaining

    # -- POST /publish ---------------------------------------------------------------------

    def require_publisher(self, scope: Scope) -> None:
        """Refuse a request that may publish nothing at all, before its body is read.

        Raises:
            HubHTTPError: ``unauthorized`` (401).
        """
        principal = principal_of(scope)
        if not principal.authenticated and not principal.publish.patterns:
            raise authentication_required("publishing needs a token on this hub")

    def authorize_publish(
        self, scope: Scope, requests: Sequence[PublishRequest], private: Sequence[bool]
    ) -> None:
        """Check every event of a publish request before any of it is published.

        Raises:
            HubHTTPError: ``invalid_topic`` / ``private_without_auth`` (400), ``unauthorized``
                (401), ``forbidden`` (403), ``rate_limited`` (429).
        """
        principal = principal_of(scope)
        limit = self.settings.max_topic_length
        for index, request in enumerate(requests):
            check_topic_lengths(request.topics, limit)
            for topic in request.topics:
                if not principal.may_publish(topic):
                    if not principal.authenticated:
                        raise authentication_required("publishing needs a token on this hub")
                    where = f"events[{index}]: " if len(requests) > 1 else ""
                    raise HubHTTPError(
                        "forbidden", f"{where}the token may not publish to {topic!r}"
                    )
        if any(private) and not self.enabled:
            raise HubHTTPError(
                "private_without_auth",
                "private events need authentication (--auth jwt or api_key): with auth off, "
                "no subscriber could ever be authorized to receive them",
            )
        self.take_publish_rate(scope, len(requests))

    def take_publish_rate(self, scope: Scope, events: int) -> None:
        """Spend ``events`` of the sender's publish rate (``publish_rate``), if limited.

        One bucket per token identity, else per client address, shared by ``POST /publish``
        and the channel routes that send messages, so no route gets around the limit.

        Raises:
            HubHTTPError: ``rate_limited`` (429, with ``Retry-After``).
        """
        if self.rates is not None:
            principal = principal_of(scope)
            key = principal.identity or ("a:" + (client_address(scope) or "unknown"))
            self.rates.take(key, events)

    # -- GET /status -----------------------------------------------------------------------

    def authorize_status(self, scope: Scope) -> None:
        """With auth on, ``/status`` (topic names, counts) needs a credential.

        Raises:
            HubHTTPError: ``unauthorized`` (401).
        """
        if self.enabled and not principal_of(scope).authenticated:
            raise authentication_required("the status of an auth-enabled hub needs a token")


def check_last_event_id(last_event_id: str | None, limit: int) -> None:
    """Refuse a ``Last-Event-ID`` longer than ``limit`` (``max_last_event_id_length``), on every
    stream route: topic streams and channel listener streams.

    Raises:
        HubHTTPError: ``last_event_id_too_long`` (400).
    """
    if last_event_id is not None and len(last_event_id) > limit:
        raise HubHTTPError(
            "last_event_id_too_long", f"Last-Event-ID is longer than {limit} characters"
        )


def _private_flag(item: Any, where: str) -> bool:
    if not isinstance(item, dict) or "private" not in item:
        return False
    value = item.pop("private")
    if not isinstance(value, bool):
        raise HubHTTPError("invalid_body", f"{where}'private' must be true or false")
    return value


def split_private(body: bytes) -> tuple[bytes, list[bool] | None]:
    """Take the ``private`` flags out of a ``POST /publish`` body.

    Bodies without the key (the common case) are returned unchanged at the cost of one byte
    search; others are parsed, stripped of the flags and re-serialised for the main parser.

    Args:
        body: the raw body.

    Returns:
        ``(body, flags)``: the body without ``private`` keys, and one flag per event (``None``
        when no flag was present: every event is public).

    Raises:
        HubHTTPError: ``invalid_json`` (400) or ``invalid_body`` (400) for a non-boolean flag.
    """
    if _PRIVATE_KEY not in body:
        return body, None
    value = _load_json(body)  # the main parser's JSON rules (no NaN, finite numbers)
    if isinstance(value, list):
        flags = [_private_flag(item, f"events[{i}]: ") for i, item in enumerate(value)]
    else:
        flags = [_private_flag(value, "")]
    return json.dumps(value).encode(), flags
