"""HTTP helpers: negotiate from a Starlette request, render a failed negotiation.

Two ways to say "no" (``docs/protocols.md`` explains when to use which):

* ``status`` mode: **406 Not Acceptable** with a JSON body listing what is available. Right for
  programmatic clients (``ssehub.client``, ``fetch``, curl), which can read a status and a body.
* ``event`` mode ("browser mode"): **200** with a ``text/event-stream`` body holding one
  ``protocol.error`` event and a ``retry:`` hint, then the end of the stream. A browser
  ``EventSource`` treats any non-200 answer as fatal *and opaque*: it fires a bare ``error``
  event, with no status and no body, and never reconnects (WHATWG HTML §9.2.3, "fail the
  connection": https://html.spec.whatwg.org/multipage/server-sent-events.html#fail-the-connection).
  The event tells the page's script what went wrong; the long ``retry`` keeps a page that
  ignores it from hammering the server (one attempt per minute by default).
* ``auto`` (default): ``event`` mode when the client stated its wants in the query string (only
  browsers need to), ``status`` mode otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from .._exceptions import NegotiationError
from ..wire import ServerSentEvent
from ._negotiation import FEATURES_QUERY, PROTOCOL_QUERY, VERSION_QUERY, Negotiated, Negotiator
from ._schema import ERROR_EVENT

__all__ = [
    "DEFAULT_ERROR_RETRY",
    "ErrorMode",
    "negotiate_request",
    "negotiation_error_body",
    "negotiation_error_response",
    "protocol_error_event",
]

DEFAULT_ERROR_RETRY: Final = 60_000
"""One minute: a page that ignores ``protocol.error`` costs one request a minute, not a storm."""

ErrorMode = Literal["auto", "status", "event"]


def negotiate_request(negotiator: Negotiator, request: HTTPConnection) -> Negotiated:
    """Negotiate from a request's ``X-Protocol*`` headers or ``protocol*`` query parameters.

    Raises:
        NegotiationError: see :meth:`Negotiator.negotiate_request`.
    """
    return negotiator.negotiate_request(request.headers, request.query_params)


def negotiation_error_body(exc: NegotiationError) -> dict[str, Any]:
    """The JSON body of a failed negotiation: ``error``, ``detail`` and ``available``."""
    return {"error": "negotiation_failed", "detail": str(exc), "available": exc.available}


def protocol_error_event(
    exc: NegotiationError, *, retry: int | None = DEFAULT_ERROR_RETRY
) -> ServerSentEvent:
    """A failed negotiation as one ``protocol.error`` event (no id: Last-Event-ID is kept)."""
    return ServerSentEvent.json(negotiation_error_body(exc), event=ERROR_EVENT, retry=retry)


def _wants_from_query(query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    if any(h in headers for h in ("x-protocol", "x-protocol-version", "x-client-features")):
        return False
    return any(p in query for p in (PROTOCOL_QUERY, VERSION_QUERY, FEATURES_QUERY))


def negotiation_error_response(
    exc: NegotiationError,
    request: HTTPConnection | None = None,
    *,
    mode: ErrorMode = "auto",
    retry: int = DEFAULT_ERROR_RETRY,
) -> Response:
    """Render a failed negotiation as a 406 JSON answer or a browser-mode event stream.

    Args:
        exc: the error (its ``available`` lists what the server offers).
        request: the request, needed by ``auto`` mode to see how the client stated its wants.
        mode: ``"status"``, ``"event"`` or ``"auto"`` (see the module docstring).
        retry: the ``retry:`` hint of event mode, in milliseconds.

    Returns:
        A Starlette response, ready to return from an endpoint.
    """
    if mode == "auto":
        browser = request is not None and _wants_from_query(request.query_params, request.headers)
        mode = "event" if browser else "status"
    if mode == "event":
        return Response(
            protocol_error_event(exc, retry=retry).encode(),
            status_code=200,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return JSONResponse(negotiation_error_body(exc), status_code=406)
