"""Who is asking: credentials to a :class:`Principal` in the ASGI scope, and what it may do.

Off by default (``auth="none"``): every request is the :data:`OPEN` principal, which may publish
and subscribe anywhere but is not *authenticated*, so it never receives private events.

With ``auth="jwt"`` or ``auth="api_key"``, :class:`AuthMiddleware` reads one credential per
request, in this order: ``Authorization: Bearer <credential>``, the auth cookie (what a browser's
``EventSource`` can send), then, only when enabled, the ``token`` query parameter (least safe: URLs
end up in logs and browser history). A credential that is present but invalid is refused with 401,
whatever the endpoint. A request without one is anonymous: it may subscribe (public events only)
when ``anonymous_subscribe`` is on, and may not publish.

The principal is stored in ``scope["ssehub.principal"]``; endpoints (the hub's and the channel
routes) call :func:`principal_of` and the ``may_*`` methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

from .._exceptions import AuthenticationError, ConfigurationError
from ..broker.events import StoredEvent
from ._errors import HubHTTPError
from ._patterns import EVERYTHING, NOTHING, TopicPatterns
from ._tokens import TokenVerifier

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ._settings import HubSettings

__all__ = [
    "AUTH_MODES",
    "OPEN",
    "PRINCIPAL_SCOPE_KEY",
    "AuthMiddleware",
    "Authenticator",
    "Principal",
    "authentication_required",
    "load_api_keys",
    "origin_allowed",
    "principal_of",
    "request_origin",
]

AUTH_MODES: Final = ("none", "jwt", "api_key")
PRINCIPAL_SCOPE_KEY: Final = "ssehub.principal"
MIN_API_KEY_LENGTH: Final = 16
"""Characters; 16 random base64 characters are 96 bits, beyond guessing over HTTP."""

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE: Final = 'Bearer realm="ssehub"'


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated (or anonymous) client of one request.

    Attributes:
        kind: ``"open"`` (authentication is off), ``"anonymous"``, ``"token"`` or ``"api_key"``.
        publish: topics it may publish to.
        subscribe: topics it may subscribe to and receive private events of.
        any_topic: whether it may also subscribe to other topics (receiving public events only).
        subject: the token's ``sub``, or the API key's name.
        expires_at: when its credential expires (Unix time), or ``None``.
        source: where the credential came from: ``"header"``, ``"cookie"``, ``"query"``.
        identity: a stable, non-secret name of the credential, for per-token limits.
    """

    kind: str
    publish: TopicPatterns
    subscribe: TopicPatterns
    any_topic: bool = False
    subject: str | None = None
    expires_at: float | None = None
    source: str | None = None
    identity: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether a valid credential was presented."""
        return self.kind in {"token", "api_key"}

    def may_publish(self, topic: str) -> bool:
        """Return whether it may publish to ``topic``."""
        return self.publish.matches(topic)

    def may_subscribe(self, topic: str) -> bool:
        """Return whether it may subscribe to ``topic`` (for public events at least)."""
        return self.any_topic or self.subscribe.matches(topic)

    def may_subscribe_pattern(self, pattern: str) -> bool:
        """Return whether it may subscribe to ``pattern`` (a topic with ``*``): every topic the
        pattern can match must be granted (:meth:`TopicPatterns.covers`), unless it may
        subscribe to any topic (then private events still reach it only by :meth:`may_read`).
        """
        return self.any_topic or self.subscribe.covers(pattern)

    def may_read(self, event: StoredEvent) -> bool:
        """Return whether ``event`` may be delivered to it.

        A private event goes only to authenticated principals granted one of its topics (the
        rule Mercure uses for private updates); public events go to every subscriber.
        """
        return not event.private or (
            self.authenticated and self.subscribe.matches_any(event.topics)
        )


OPEN: Final = Principal("open", EVERYTHING, NOTHING, any_topic=True)
"""The principal of every request when authentication is off."""


def principal_of(scope: Scope) -> Principal:
    """Return the request's principal (:data:`OPEN` when authentication is off).

    Args:
        scope: the ASGI scope (or ``request.scope``).
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else OPEN


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def load_api_keys(path: str) -> dict[bytes, Principal]:
    """Read an API key file: one key per line, optionally followed by topic patterns.

    ``KEY`` alone grants every topic (publish and subscribe); ``KEY orders/* audit`` grants only
    those. Blank lines and lines starting with ``#`` are ignored. Keys are kept as SHA-256
    digests, looked up by digest, so comparing them leaks nothing useful through timing.

    Args:
        path: the file.

    Returns:
        SHA-256 digest of each key -> its principal.

    Raises:
        ConfigurationError: the file cannot be read, a key is shorter than 16 characters, a
            pattern is invalid, or a key appears twice.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the API key file {path}: {exc}") from None
    keys: dict[bytes, Principal] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key, patterns = words[0], words[1:]
        if len(key) < MIN_API_KEY_LENGTH:
            raise ConfigurationError(
                f"{path}:{number}: API keys need at least {MIN_API_KEY_LENGTH} characters"
            )
        try:
            grants = TopicPatterns(patterns) if patterns else EVERYTHING
        except ValueError as exc:
            raise ConfigurationError(f"{path}:{number}: {exc}") from None
        digest = _digest(key)
        if digest in keys:
            raise ConfigurationError(f"{path}:{number}: this API key is listed twice")
        name = f"api-key-{number}"
        keys[digest] = Principal("api_key", grants, grants, subject=name, identity=name)
    if not keys:
        raise ConfigurationError(f"the API key file {path} lists no key")
    return keys


class Authenticator:
    """Turn a request's credential into a :class:`Principal`.

    Args:
        verifier: verifies JWTs (``None``: JWTs are not accepted).
        api_keys: SHA-256 digest -> principal (see :func:`load_api_keys`).
        cookie: the name of the auth cookie, or ``None`` to ignore cookies.
        query_token: accept the ``token`` query parameter.
        anonymous_subscribe: let requests without a credential subscribe (public events only).
    """

    def __init__(
        self,
        *,
        verifier: TokenVerifier | None = None,
        api_keys: Mapping[bytes, Principal] | None = None,
        cookie: str | None = "ssehub_token",
        query_token: bool = False,
        anonymous_subscribe: bool = False,
    ) -> None:
        self.verifier = verifier
        self.api_keys = dict(api_keys or {})
        self.cookie = cookie
        self.query_token = query_token
        self.anonymous = Principal("anonymous", NOTHING, NOTHING, any_topic=anonymous_subscribe)

    @classmethod
    def from_settings(cls, settings: HubSettings) -> Authenticator | None:
        """Build the authenticator the settings describe (``None`` when auth is off).

        Raises:
            ConfigurationError: keys or files are missing or unusable.
        """
        if settings.auth == "none":
            return None
        verifier = None
        if settings.auth == "jwt":
            verifier = TokenVerifier.from_files(
                settings.jwt_algorithm,
                key=settings.jwt_key,
                key_file=settings.jwt_key_file,
                jwks_file=settings.jwks_file,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway,
            )
        elif not settings.api_keys_file:
            raise ConfigurationError("--auth api_key needs --api-keys-file")
        api_keys = load_api_keys(settings.api_keys_file) if settings.api_keys_file else {}
        return cls(
            verifier=verifier,
            api_keys=api_keys,
            cookie=settings.auth_cookie or None,
            query_token=settings.auth_query_token,
            anonymous_subscribe=settings.anonymous_subscribe,
        )

    def _credential(self, scope: Scope) -> tuple[str, str] | None:
        authorization = cookie_header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cookie":
                cookie_header = value.decode("latin-1")
        if authorization is not None:
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise _unauthorized("invalid_token", "use 'Authorization: Bearer <token>'")
            return credential.strip(), "header"
        if self.cookie is not None and cookie_header is not None:
            credential = cookie_parser(cookie_header).get(self.cookie)
            if credential:
                return credential, "cookie"
        query = scope.get("query_string", b"")
        if b"token=" in query:
            values = [v for k, v in parse_qsl(query.decode("latin-1")) if k == "token"]
            if values:
                if not self.query_token:
                    raise _unauthorized(
                        "invalid_token", "tokens in the query string are disabled on this hub"
                    )
                return values[-1], "query"
        return None

    def authenticate(self, scope: Scope) -> Principal:
        """Return the principal of the request described by ``scope``.

        Raises:
            HubHTTPError: ``invalid_token`` (401): a credential is present but not valid.
        """
        found = self._credential(scope)
        if found is None:
            return self.anonymous
        credential, source = found
        key = self.api_keys.get(_digest(credential))
        if key is not None:
            return Principal(
                key.kind, key.publish, key.subscribe, subject=key.subject,
                source=source, identity=key.identity,
            )  # fmt: skip
        if self.verifier is None:
            raise _unauthorized("invalid_token", "the API key is not valid")
        try:
            claims = self.verifier.verify(credential)
        except AuthenticationError as exc:
            raise _unauthorized("invalid_token", exc.reason) from None
        return Principal(
            "token",
            claims.publish,
            claims.subscribe,
            any_topic=self.anonymous.any_topic,
            subject=claims.subject,
            expires_at=claims.expires_at,
            source=source,
            identity="jwt:" + hashlib.sha256(credential.encode()).hexdigest()[:24],
        )


def _unauthorized(code: str, detail: str) -> HubHTTPError:
    return HubHTTPError(code, detail, {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'})


def authentication_required(detail: str) -> HubHTTPError:
    """Return the 401 for a request that needs a credential and has none.

    Args:
        detail: what the credential is needed for.
    """
    return HubHTTPError("unauthorized", detail, {"WWW-Authenticate": _CHALLENGE})


class AuthMiddleware:
    """Authenticate every HTTP request and store its principal in the scope.

    A cookie-authenticated request with an unsafe method (``POST``) must come from an allowed
    origin: the hub's own, or one of ``trusted_origins``. Browsers attach cookies to
    cross-site requests, so without this check any page could publish as the user (CSRF).

    Args:
        app: the wrapped app.
        authenticator: the credential checker.
        trusted_origins: exact origins (``https://app.example``) allowed besides the hub's own.
    """

    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, trusted_origins: frozenset[str]
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.trusted_origins = trusted_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.authenticate(scope)
        except HubHTTPError as exc:
            await exc.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authenticate(self, scope: Scope) -> None:
        """Store the request's principal in ``scope``; also called by ``hub/_dispatch.py``.

        Raises:
            HubHTTPError: a credential is invalid (401), or a cookie-authenticated unsafe
                request comes from another origin (403).
        """
        principal = self.authenticator.authenticate(scope)
        if principal.source == "cookie" and scope["method"] not in _SAFE_METHODS:
            self._check_origin(scope)
        scope[PRINCIPAL_SCOPE_KEY] = principal

    def _check_origin(self, scope: Scope) -> None:
        origin = request_origin(scope)
        if origin is None:
            raise HubHTTPError(
                "forbidden_origin",
                "a cookie-authenticated request that changes state needs an Origin header",
            )
        if origin_allowed(scope, origin, self.trusted_origins):
            return
        raise HubHTTPError(
            "forbidden_origin", "cookie-authenticated requests are not accepted from this origin"
        )


def request_origin(scope: Scope) -> str | None:
    """The request's ``Origin`` header, if any (cookie-authenticated writes need one: CSRF)."""
    origin = None
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value.decode("latin-1")
    return origin


def origin_allowed(scope: Scope, origin: str, trusted: Collection[str]) -> bool:
    """Whether ``origin`` is one of ``trusted`` or the hub's own (its scheme, behind trusted
    proxies too, and the request's ``Host``)."""
    if origin in trusted:
        return True
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
    scheme = scope.get("ssehub.scheme") or scope.get("scheme", "http")
    return host is not None and origin == f"{scheme}://{host}"
