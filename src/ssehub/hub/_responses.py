"""Which error codes each operation of the hub can answer: one declaration per route.

:func:`operation_codes` lists, per operation (path and method), every ``error`` code the
operation can answer with the settings given: its own validation, the broker being unavailable,
and the security layer (authentication, grants, connection caps, publish rate). Each code's HTTP
status comes from :data:`~ssehub.hub.ERROR_CODES`, the table the handlers' errors
(:class:`~ssehub.hub._errors.HubHTTPError`) take their status from, so the document groups the
codes by the status they are answered with (:func:`error_responses`): each error response
of an operation has an ``error`` enum of exactly its codes. ``tests/hub/test_hub_openapi.py``
checks that every code the route modules raise is listed here, and provokes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from ._errors import ERROR_CODES

if TYPE_CHECKING:
    from ._settings import HubSettings

__all__ = ["CODE_MEANINGS", "error_responses", "operation_codes"]

CODE_MEANINGS: Final[Mapping[str, str]] = {
    "invalid_json": "the body is not JSON (or holds NaN, Infinity or invalid UTF-8)",
    "invalid_body": "the body is not of the expected shape (or `Content-Length` is not a number)",
    "empty_batch": "an empty batch (`[]`)",
    "unknown_field": "a field the body does not have (ids are assigned by the hub)",
    "missing_topic": "no topic",
    "invalid_topic": "an invalid topic (empty, too long, characters outside URI characters), "
    "or both `topic` and `topics`",
    "too_many_topics": "more topics than `max_topics` (or, in a subscription, more patterns "
    "than `max_patterns`)",
    "missing_data": "no `data`",
    "invalid_data": "data that cannot be sent (a lone surrogate)",
    "invalid_event": "an invalid event or message type",
    "invalid_retry": "a `retry` that is not an integer from 0 to 2**64 - 1",
    "invalid_idempotency_key": "an `Idempotency-Key` (or `idempotency_key`) that is not 1-255 "
    "visible ASCII characters, or the header twice",
    "idempotency_key_reused": "the idempotency key names an earlier publication that differs "
    "from this one; nothing was published",
    "reserved_event": "a type starting with `ssehub.`, which the hub reserves for its own notices",
    "last_event_id_too_long": "a `Last-Event-ID` longer than `max_last_event_id_length`",
    "private_without_auth": "a private event on a hub without authentication",
    "unauthorized": "no credential where one is needed (`WWW-Authenticate: Bearer`)",
    "invalid_token": "a credential that is invalid, expired or not yet valid",
    "forbidden": "the credential does not grant the topic or channel",
    "forbidden_origin": "a cookie-authenticated request that changes state, from a foreign or "
    "missing `Origin`",
    "origin_not_allowed": "a CORS preflight from an origin that is not allowed",
    "too_many_connections": "too many open streams (in total, from this address or with this "
    "credential); retry after `Retry-After` seconds",
    "rate_limited": "over the sender's publish rate (`publish_rate`, when set); nothing was "
    "sent; retry after `Retry-After` seconds",
    "not_found": "no such endpoint (a path parameter holding `/` reaches none)",
    "method_not_allowed": "a method the endpoint does not have",
    "body_too_large": "a body over `max_body_size` bytes",
    "too_many_events": "a batch over `max_batch` events",
    "event_too_large": "an event or message over `max_event_size` bytes once encoded (data "
    "made of line breaks grows sevenfold on the wire); nothing was stored",
    "unsupported_media_type": "a body not sent as `Content-Type: application/json`",
    "unavailable": "the broker (or the channels) not running, or the backend unreachable; "
    "nothing was published",
    "outcome_unknown": 'the backend did not answer a publish it was sent (`"outcome": '
    '"unknown"`): it may be published; retrying with the same idempotency key is safe',
    "invalid_name": "an invalid or missing channel name or listener id",
    "unknown_channel": "no such channel",
    "unknown_listener": "no such listener",
    "already_exists": "the name or id is taken",
    "limit_reached": "the hub's `max_channels` or the channel's `max_listeners` is reached",
    "listener_busy": "another client streams this listener",
    "message_rejected": "a listener's `on_message` hook refused the message",
}
"""What each code means, for the document's response descriptions."""

_BODY: Final = (
    "unsupported_media_type",
    "body_too_large",
    "invalid_json",
    "invalid_body",
    "unknown_field",
)
_PUBLISH: Final = (
    "empty_batch",
    "missing_topic",
    "invalid_topic",
    "too_many_topics",
    "missing_data",
    "invalid_data",
    "invalid_event",
    "invalid_retry",
    "reserved_event",
    "too_many_events",
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "outcome_unknown",
    "event_too_large",
)
_MESSAGE: Final = (
    "invalid_event",
    "reserved_event",
    "invalid_data",
    "message_rejected",
    "event_too_large",
)


def operation_codes(settings: HubSettings) -> dict[tuple[str, str], tuple[str, ...]]:
    """Return the error codes each operation can answer, keyed by ``(path, method)``.

    Operations that settings switch off are listed all the same (the document uses the
    entries of the operations it has).

    Args:
        settings: the hub's settings (authentication, its cookie and the anonymous
            subscriptions decide the security codes).
    """
    auth = settings.auth != "none"
    # Any request carrying a credential has it checked, on every route (401 if invalid).
    checked: tuple[str, ...] = ("invalid_token",) if auth else ()
    needs = (*checked, "unauthorized") if auth else ()
    granted = (*needs, "forbidden") if auth else ()
    # Anonymous subscriptions let anyone read any topic: no 401 or 403 for want of a grant.
    reads = checked if settings.anonymous_subscribe else granted
    writes = (*granted, "forbidden_origin") if auth and settings.auth_cookie else granted
    # Listed whether or not `publish_rate` is set: clients should handle it either way.
    rate = ("rate_limited",)
    private = () if auth else ("private_without_auth",)
    stream = ("last_event_id_too_long", "too_many_connections", "unavailable")
    channel = ("unknown_channel", "not_found", "unavailable")
    listener = (*channel, "unknown_listener")
    events = ("missing_topic", "invalid_topic", "too_many_topics", *stream)
    listeners = "/channels/{channel}/listeners"
    create = ("invalid_name", "already_exists", "limit_reached")
    return {
        ("/events", "get"): (*events, *reads),
        ("/publish", "post"): (*_BODY, *_PUBLISH, *private, "unavailable", *writes, *rate),
        ("/status", "get"): ("unavailable", *needs),
        ("/health", "get"): checked,
        ("/livez", "get"): checked,
        ("/readyz", "get"): checked,
        ("/openapi.json", "get"): checked,
        ("/docs", "get"): checked,
        ("/metrics", "get"): needs,
        ("/", "get"): needs,
        ("/dashboard/stats", "get"): ("unavailable", *needs),
        ("/channels", "post"): (*_BODY, *create, "unavailable", *writes),
        ("/channels", "get"): ("unavailable", *reads),
        ("/channels/{channel}", "delete"): (*channel, *writes),
        (listeners, "post"): (*_BODY, *channel, *create, *reads),
        (f"{listeners}/{{listener}}/events", "get"): (*listener, *stream, "listener_busy", *reads),
        ("/channels/{channel}/broadcast", "post"): (*_BODY, *channel, *_MESSAGE, *writes, *rate),
        (f"{listeners}/{{listener}}/messages", "post"): (
            *_BODY,
            *listener,
            *_MESSAGE,
            *writes,
            *rate,
        ),
    }


def _headers(status: int) -> dict[str, Any]:
    if status == 401:
        return {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`."}}
    if status == 429:
        return {
            "Retry-After": {
                "schema": {"type": "integer", "minimum": 0},
                "description": "Seconds to wait before retrying.",
            }
        }
    return {}


def error_responses(codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return the error responses of an operation answering ``codes``, keyed by status.

    Each response's schema is the ``Error`` component with its ``error`` narrowed to the codes
    of that status; its description says what each code means.

    Args:
        codes: keys of :data:`~ssehub.hub.ERROR_CODES`.
    """
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_CODES[code], []).append(code)
    responses: dict[str, dict[str, Any]] = {}
    for status in sorted(by_status):
        listed = sorted(by_status[status])
        meanings = "; ".join(f"`{code}`: {CODE_MEANINGS[code]}" for code in listed)
        response: dict[str, Any] = {
            "description": f"{HTTPStatus(status).phrase}. {meanings}.",
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Error"},
                            {"properties": {"error": {"enum": listed}}},
                        ]
                    }
                }
            },
        }
        headers = _headers(status)
        if headers:
            response["headers"] = headers
        responses[str(status)] = response
    return responses
