"""JSON error responses: every error the hub answers is ``{"error": <code>, "detail": <text>}``.

``error`` is a stable machine code (documented in the OpenAPI description, listed in
:data:`ERROR_CODES`); ``detail`` is for humans and may change. A client branches on the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["ERROR_CODES", "HubHTTPError", "error_response", "http_exception_handler"]

ERROR_CODES: Final[Mapping[str, int]] = {
    "invalid_json": 400,
    "invalid_body": 400,
    "empty_batch": 400,
    "unknown_field": 400,
    "missing_topic": 400,
    "invalid_topic": 400,
    "too_many_topics": 400,
    "missing_data": 400,
    "invalid_data": 400,
    "invalid_event": 400,
    "invalid_retry": 400,
    "invalid_idempotency_key": 400,
    # A valid request that conflicts with what the key already names (the hub's state), not a
    # malformed one: 409, as a retry after the first publication is forgotten would succeed.
    "idempotency_key_reused": 409,
    # A reserved type is well-formed but not the publisher's to use (SSE-SPEC §5 case 28).
    "reserved_event": 403,
    # -- security: codes added here
    "last_event_id_too_long": 400,
    "private_without_auth": 400,
    "unauthorized": 401,
    "invalid_token": 401,
    "forbidden": 403,
    "forbidden_origin": 403,
    "origin_not_allowed": 403,
    "too_many_connections": 429,
    "rate_limited": 429,
    # -- end security
    "not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "too_many_events": 413,
    "event_too_large": 413,
    "unsupported_media_type": 415,
    "unavailable": 503,
    # Sent to the backend, not answered: maybe published (body: "outcome": "unknown").
    "outcome_unknown": 504,
    # -- channels: their error codes
    "invalid_name": 400,
    "unknown_channel": 404,
    "unknown_listener": 404,
    "already_exists": 409,
    "limit_reached": 409,
    "listener_busy": 409,
    "message_rejected": 422,
}
"""Every ``error`` code the hub can answer, with its HTTP status.

``unavailable`` (503) and ``outcome_unknown`` (504) are the only non-4xx: the broker is not
running (the hub is starting, or it is mounted without its lifespan and without a ``broker=``)
or its backend cannot be reached (nothing was published), or a publish was sent to the backend
and not answered (it may be published; its body adds ``"outcome": "unknown"``). They never
depend on the input.
"""

_STATUS_CODES: Final = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}

_EXTRA_FIELDS: Final[Mapping[str, Mapping[str, str]]] = {"outcome_unknown": {"outcome": "unknown"}}
"""Fields a code's body carries besides ``error`` and ``detail``: a client that does not know
the code still sees that the outcome is unknown (and retries with the same idempotency key)."""


class HubHTTPError(Exception):
    """An error answered as JSON; raised inside endpoints, turned into a response by the app.

    Args:
        code: a key of :data:`ERROR_CODES`; it fixes the HTTP status.
        detail: a human-readable explanation. Never include untrusted input verbatim beyond
            short, already-validated fragments.
        headers: extra response headers (for example ``Allow``).
    """

    def __init__(self, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = ERROR_CODES[code]
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """Return the JSON response for this error."""
        return error_response(self.code, self.detail, self.headers)


def error_response(code: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """Return a ``{"error": code, "detail": detail}`` response with the code's HTTP status
    (``outcome_unknown`` adds ``"outcome": "unknown"``).

    Args:
        code: a key of :data:`ERROR_CODES`.
        detail: the human-readable message.
        headers: extra response headers.

    Returns:
        The JSON response, with ``Cache-Control: no-store`` (errors are never cacheable).
    """
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(
        {"error": code, "detail": detail, **_EXTRA_FIELDS.get(code, {})},
        status_code=ERROR_CODES[code],
        headers=all_headers,
    )


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Turn Starlette's own 404/405 (routing) into the hub's JSON error shape.

    Args:
        request: the request that failed.
        exc: a :class:`HubHTTPError` or a Starlette ``HTTPException``.

    Returns:
        The JSON error response.
    """
    if isinstance(exc, HubHTTPError):
        return exc.response()
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code)
    if code is None:  # pragma: no cover - Starlette raises only the codes above on its own
        return JSONResponse(
            {"error": "http_error", "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )
    detail = {
        "not_found": f"no such endpoint: {request.url.path}",
        "method_not_allowed": f"{request.method} is not allowed here",
        "body_too_large": str(exc.detail),
    }[code]
    return error_response(code, detail, exc.headers)
