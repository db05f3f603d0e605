"""CORS for the hub: exact origins get credentials, ``*`` never does.

Browsers send ``Origin`` on cross-origin requests. For an allowed origin the hub echoes it in
``Access-Control-Allow-Origin`` (with ``Vary: Origin``, so caches keep answers per origin) and,
for exact origins only, ``Access-Control-Allow-Credentials: true`` so ``EventSource`` with
``withCredentials`` can send the auth cookie. ``*`` allows anonymous reads from any page and
never credentials (the Fetch standard forbids that pair, and it would let every site read
a logged-in user's streams). Other origins get no CORS headers, so their pages cannot read.

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here with 204,
allowing ``GET``/``HEAD``/``POST`` and the headers a client of the hub needs: ``last-event-id``
(browsers preflight a long or non-safelisted id), ``authorization`` and ``content-type``. A
preflight from another origin, or asking for other methods or headers, gets 403 as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from starlette.datastructures import MutableHeaders

from ._errors import HubHTTPError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "PREFLIGHT_MAX_AGE", "CORSMiddleware", "stamp"]

ALLOWED_METHODS: Final = ("GET", "HEAD", "POST")
ALLOWED_HEADERS: Final = frozenset({"authorization", "cache-control", "content-type",
                                    "last-event-id"})  # fmt: skip
EXPOSED_HEADERS: Final = "SSEHub-Reset, Retry-After"
PREFLIGHT_MAX_AGE: Final = 600
"""Seconds a browser may cache a preflight answer: Chromium's own cap is 7200, Firefox's 86400;
ten minutes keeps a changed allow-list effective soon."""


class CORSMiddleware:
    """Answer preflights and add CORS headers for allowed origins.

    Args:
        app: the wrapped app.
        origins: exact origins (``https://app.example``), or ``*`` for any origin without
            credentials.
        expose: the response headers a page may read (``Access-Control-Expose-Headers``).
    """

    def __init__(
        self, app: ASGIApp, *, origins: Iterable[str], expose: str = EXPOSED_HEADERS
    ) -> None:
        self.app = app
        self.expose = expose
        origins = tuple(origins)
        self.any_origin = "*" in origins
        self.exact = frozenset(o for o in origins if o != "*")

    def _allow(self, origin: str) -> dict[str, str] | None:
        if origin in self.exact:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": self.expose,
            }
        if self.any_origin:
            return {
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": self.expose,
            }
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = request_method = request_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                request_method = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                request_headers = value.decode("latin-1")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allow(origin)
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._preflight(allowed, request_method, request_headers)(scope, receive, send)
            return
        if allowed is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp(message, allowed)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def allowed_for(self, scope: Scope) -> dict[str, str] | None:
        """Return the CORS headers for a simple (not preflight) request's origin, if allowed.

        The hub's ``GET /events`` dispatcher (``hub/_dispatch.py``) calls this and
        :func:`stamp` directly (a ``GET`` is never a preflight).
        """
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")  # the last one, as __call__ reads it
        return None if origin is None else self._allow(origin)

    def _preflight(
        self, allowed: dict[str, str] | None, method: str, requested: str | None
    ) -> ASGIApp:
        if allowed is None:
            return HubHTTPError("origin_not_allowed", "this origin may not call the hub").response()
        if method.strip().upper() not in ALLOWED_METHODS:
            return HubHTTPError(
                "origin_not_allowed",
                f"preflight for a method other than {', '.join(ALLOWED_METHODS)}",
            ).response()
        names = {h.strip().lower() for h in (requested or "").split(",") if h.strip()}
        if not names <= ALLOWED_HEADERS:
            return HubHTTPError(
                "origin_not_allowed",
                f"preflight for headers other than {', '.join(sorted(ALLOWED_HEADERS))}",
            ).response()
        from starlette.responses import Response

        headers = {
            **allowed,
            "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
            "Access-Control-Allow-Headers": ", ".join(sorted(ALLOWED_HEADERS)),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            "Vary": "Origin",
        }
        return Response(status_code=204, headers=headers)


def stamp(message: Message, allowed: dict[str, str]) -> None:
    """Add the CORS headers ``allowed`` (and ``Vary: Origin``) to a response start, in place."""
    headers = MutableHeaders(scope=message)
    headers.update(allowed)
    headers.add_vary_header("Origin")
