"""The security part of the hub's OpenAPI document: schemes, the ``private`` flag, 401/403/429.

:func:`add_security` edits the document that :func:`ssehub.hub.openapi_document` builds, so the
description follows the settings: security schemes and requirements appear only when
authentication is on, the cookie scheme names the configured cookie, and the query scheme is
listed only when ``auth_query_token`` is enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._settings import HubSettings

__all__ = ["add_security"]

_OPEN_PATHS: Final = frozenset({"/health", "/openapi.json", "/docs"})


def _error(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _schemes(settings: HubSettings) -> dict[str, Any]:
    bearer_format = "JWT" if settings.auth == "jwt" else "API key"
    schemes: dict[str, Any] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": bearer_format,
            "description": f"`Authorization: Bearer <{bearer_format}>`.",
        }
    }
    if settings.auth_cookie:
        schemes["cookie"] = {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.auth_cookie,
            "description": "The token in a cookie, which a browser's EventSource sends (with "
            "`withCredentials` across origins). Publishing this way needs an allowed `Origin`.",
        }
    if settings.auth_query_token:
        schemes["query"] = {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The token in the URL: least safe (URLs are logged).",
        }
    return schemes


def _add_responses(operation: dict[str, Any], auth: bool, *, stream: bool) -> None:
    responses = operation.setdefault("responses", {})
    if auth:
        responses["401"] = _error(
            "No credential where one is needed, or an invalid, expired or not-yet-valid one "
            "(with a `WWW-Authenticate: Bearer` header).",
            ["unauthorized", "invalid_token"],
        )
        responses["403"] = _error(
            "The credential does not grant a requested topic, or a cookie-authenticated "
            "request came from a foreign or missing Origin.",
            ["forbidden", "forbidden_origin"],
        )
    if stream:
        responses["429"] = _error(
            "Too many open streams (in total, from this address, or with this token); no "
            "stream was opened. Retry after `Retry-After` seconds.",
            ["too_many_connections"],
        )
    else:
        responses["429"] = _error(
            "The publish rate of this token or address is exceeded; nothing was published.",
            ["rate_limited"],
        )


def add_security(document: dict[str, Any], settings: HubSettings) -> None:
    """Add the security description of a hub configured by ``settings`` to ``document``.

    Args:
        document: the OpenAPI document (edited in place).
        settings: the hub's settings.
    """
    auth = settings.auth != "none"
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    publish_event = schemas.get("PublishEvent")
    if publish_event is not None:
        publish_event["properties"]["private"] = {
            "type": "boolean",
            "default": False,
            "description": "Deliver only to subscribers whose token grants one of the event's "
            "topics, live and on replay. Needs authentication (400 `private_without_auth` "
            "when it is off).",
        }
    paths = document.get("paths", {})
    events = paths.get("/events", {}).get("get")
    if events is not None:
        for parameter in events.get("parameters", []):
            if parameter.get("name") in {"Last-Event-ID", "lastEventId"}:
                parameter["schema"]["maxLength"] = settings.max_last_event_id_length
        bad = events["responses"].get("400")
        if bad is not None:
            bad["description"] = bad["description"].rstrip(".") + ", last_event_id_too_long."
        _add_responses(events, auth, stream=True)
    publish = paths.get("/publish", {}).get("post")
    if publish is not None:
        _add_responses(publish, auth, stream=False)
    status = paths.get("/status", {}).get("get")
    if status is not None and auth:
        status["responses"]["401"] = _error("A credential is needed.", ["unauthorized"])
    info = document.setdefault("info", {})
    description = info.get("description", "").replace(" Authentication is not enabled.", "")
    if not auth:
        info["description"] = description + " Authentication is not enabled."
        return
    info["description"] = (
        description + f" Authentication is on ({settings.auth}): see the security schemes."
    )
    schemes = _schemes(settings)
    components["securitySchemes"] = schemes
    document["security"] = [{name: []} for name in schemes]
    for path, item in paths.items():
        if path in _OPEN_PATHS:
            for operation in item.values():
                operation["security"] = []
