"""Mercure authorization: JWS tokens with the ``mercure`` claim, and Mercure's error answers.

draft-dunglas-mercure-07 §4 ("Authorization"): publishers, and subscribers that want private
updates, present a JWS whose ``mercure`` claim lists topic selectors::

    {"mercure": {"publish": ["https://example.com/books/{id}"],
                 "subscribe": ["https://example.com/users/42/{+any}"],
                 "payload": {"user": "https://example.com/users/42"}}}

The token is read, as the Mercure hub reads it, from the ``Authorization: Bearer`` header, else
the ``authorization`` query parameter, else the ``mercureAuthorization`` cookie. A cookie
authorizes a ``POST`` only from an origin of ``--mercure-cors-origins`` or the hub's own (the
cookie would otherwise let any page publish as the user). The algorithm is fixed by
``--mercure-jwt-alg`` (HS256 or RS256), never taken from the token; ``exp`` and ``nbf`` are
enforced when present (the Mercure hub does not require ``exp``; tokens of Symfony's and API
Platform's defaults have none).

Errors answer ``text/plain`` like the Mercure hub (``http.Error``): 401 with
``WWW-Authenticate: Bearer`` when no valid token is presented where one is needed, 403 when a
valid token does not grant the operation, 400 for a malformed request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import PlainTextResponse, Response

from .._exceptions import ConfigurationError
from ._auth import origin_allowed, request_origin
from ._mercure_selectors import InvalidSelector, SelectorSet
from ._tokens import MAX_TOKEN_LENGTH, _import_jwt, _load_key

if TYPE_CHECKING:
    from starlette.types import Scope

    from ._settings import HubSettings

__all__ = [
    "COOKIE_NAME",
    "QUERY_PARAMETER",
    "MercureAuth",
    "MercureClaims",
    "MercureError",
]

COOKIE_NAME: Final = "mercureAuthorization"
"""The cookie the Mercure hub reads a token from (its default ``cookie_name``)."""

QUERY_PARAMETER: Final = "authorization"
"""The query parameter the Mercure hub reads a token from."""

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="mercure"'}


class MercureError(Exception):
    """An error answered as ``text/plain`` (the Mercure hub's form), never with a secret.

    Args:
        status: the HTTP status.
        message: one line for the body.
        headers: extra response headers.
    """

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """Return the plain-text response (``Cache-Control: no-store``)."""
        headers = {"Cache-Control": "no-store", **self.headers}
        return PlainTextResponse(self.message + "\n", status_code=self.status, headers=headers)


def unauthorized(message: str) -> MercureError:
    """A 401 with the Bearer challenge."""
    return MercureError(401, message, _CHALLENGE)


@dataclass(frozen=True, slots=True)
class MercureClaims:
    """What a verified Mercure token grants.

    Attributes:
        publish: the selectors of topics it may publish to (``mercure.publish``).
        subscribe: the selectors of topics whose private updates it may receive.
        payload: ``mercure.payload`` (shown in subscription events), or ``None``.
        subject: the ``sub`` claim, or ``None``.
        expires_at: the ``exp`` claim (Unix time), or ``None``.
        identity: a non-secret digest of the token, for per-token connection limits.
        has_publish: whether the token has a ``mercure.publish`` claim at all.
    """

    publish: SelectorSet
    subscribe: SelectorSet
    payload: Any = None
    subject: str | None = None
    expires_at: float | None = None
    identity: str | None = None
    has_publish: bool = False


ANONYMOUS: Final = MercureClaims(SelectorSet(()), SelectorSet(()))
"""The claims of a subscriber without a token: public updates only."""


def _selectors(grants: Mapping[str, Any], name: str) -> SelectorSet:
    value = grants.get(name, [])
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise unauthorized(f"the mercure.{name} claim must be a list of strings")
    try:
        return SelectorSet(value)
    except InvalidSelector as exc:
        raise unauthorized(f"the mercure.{name} claim: {exc}") from None


class _Verifier:
    def __init__(self, algorithm: str, key: str, leeway: float) -> None:
        self._jwt = _import_jwt()
        self.algorithm = algorithm
        self.leeway = leeway
        try:
            self._key = _load_key(algorithm, key)
        except ConfigurationError as exc:
            raise ConfigurationError(f"Mercure JWT key: {exc}") from None

    def verify(self, token: str) -> MercureClaims:
        jwt = self._jwt
        if len(token) > MAX_TOKEN_LENGTH:
            raise unauthorized("the token is too long")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                leeway=self.leeway,
                options={"verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            # One answer for every failure: why a token failed is not the client's business.
            raise unauthorized("invalid token") from None
        grants = payload.get("mercure")
        if grants is None:
            grants = {}
        if not isinstance(grants, dict):
            raise unauthorized("the mercure claim must be an object")
        subject = payload.get("sub")
        exp = payload.get("exp")
        try:
            expires_at = float(exp) if isinstance(exp, (int, float)) else None
        except OverflowError:  # an integer beyond any time (10**400)
            raise unauthorized("invalid token") from None
        digest = hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
        return MercureClaims(
            publish=_selectors(grants, "publish"),
            subscribe=_selectors(grants, "subscribe"),
            payload=grants.get("payload"),
            subject=subject if isinstance(subject, str) else None,
            expires_at=expires_at,
            identity="mercure:" + digest,
            has_publish=isinstance(grants.get("publish"), list),
        )


def _token(scope: Scope, query: Mapping[str, str]) -> tuple[str, str] | None:
    """The presented token and where it came from: header, query parameter, then cookie."""
    cookie_header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise unauthorized("use 'Authorization: Bearer <token>'")
            return credential.strip(), "header"
        if name == b"cookie":
            cookie_header = value.decode("latin-1")
    if QUERY_PARAMETER in query:
        return query[QUERY_PARAMETER], "query"
    if cookie_header is not None:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # noqa: BLE001 - a malformed Cookie header is no credential
            return None
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and morsel.value:
            return morsel.value, "cookie"
    return None


class MercureAuth:
    """The Mercure hub's token checks, from the settings.

    Args:
        settings: the hub's settings (``mercure_*`` options, ``jwt_leeway``).

    Raises:
        ConfigurationError: a key does not suit ``mercure_jwt_alg``.
    """

    def __init__(self, settings: HubSettings) -> None:
        algorithm, leeway = settings.mercure_jwt_alg, settings.jwt_leeway
        publisher = settings.mercure_publisher_jwt_key or settings.mercure_jwt_key
        subscriber = settings.mercure_subscriber_jwt_key or settings.mercure_jwt_key
        self.publisher = None if publisher is None else _Verifier(algorithm, publisher, leeway)
        self.subscriber = None if subscriber is None else _Verifier(algorithm, subscriber, leeway)
        self.anonymous = settings.mercure_anonymous
        self.origins = frozenset(o for o in settings.mercure_cors_origins if o != "*")

    def subscriber_claims(self, scope: Scope, query: Mapping[str, str]) -> MercureClaims:
        """The claims of a subscriber (or a caller of the subscriptions API).

        Raises:
            MercureError: 401: an invalid token, or none and anonymous subscribers are off.
        """
        found = _token(scope, query)
        if found is None or self.subscriber is None:
            if found is not None and not self.anonymous:
                raise unauthorized("subscribers' tokens are not accepted by this hub")
            if not self.anonymous:
                raise unauthorized("subscribing needs a token on this hub")
            return ANONYMOUS
        return self.subscriber.verify(found[0])

    def publisher_claims(self, scope: Scope, query: Mapping[str, str]) -> MercureClaims:
        """The claims of a publisher.

        Raises:
            MercureError: 401 (no valid token, or one without a ``mercure.publish`` claim),
                403 (a cookie sent from an origin that may not publish).
        """
        found = _token(scope, query)
        if found is None or self.publisher is None:
            raise unauthorized("publishing needs a token with a mercure.publish claim")
        token, source = found
        if source == "cookie":
            self._check_origin(scope)
        claims = self.publisher.verify(token)
        if not claims.has_publish:
            raise unauthorized("the token has no mercure.publish claim")
        return claims

    def _check_origin(self, scope: Scope) -> None:
        origin = request_origin(scope)
        if origin is not None and origin_allowed(scope, origin, self.origins):
            return
        raise MercureError(403, "a cookie may publish only from an allowed origin")
