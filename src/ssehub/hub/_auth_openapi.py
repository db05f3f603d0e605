"""The security part of the hub's OpenAPI document: schemes and requirements.

:func:`add_security` edits the document that :func:`ssehub.hub.openapi_document` builds, so the
description follows the settings: security schemes and requirements appear only when
authentication is on, the cookie scheme names the configured cookie, and the query scheme is
listed only when ``auth_query_token`` is enabled. Operations anyone may call list no
requirement; with ``anonymous_subscribe`` the reading operations accept no credential too. The
401, 403 and 429 responses come with every other error response, from the table of codes per
operation (``_responses.operation_codes``), and the ``private`` flag is a field of the publish
body's type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._settings import HubSettings

__all__ = ["add_security"]

_OPEN_PATHS: Final = frozenset({"/health", "/livez", "/readyz", "/openapi.json", "/docs"})
_READS: Final = frozenset(
    {
        ("/events", "get"),
        ("/channels", "get"),
        ("/channels/{channel}/listeners", "post"),
        ("/channels/{channel}/listeners/{listener}/events", "get"),
    }
)
"""Operations that need a ``subscribe`` grant (a channel ``N`` is the topic ``channels/N``)."""


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


def add_security(document: dict[str, Any], settings: HubSettings) -> None:
    """Add the security description of a hub configured by ``settings`` to ``document``.

    Args:
        document: the OpenAPI document (edited in place).
        settings: the hub's settings.
    """
    auth = settings.auth != "none"
    components = document.setdefault("components", {})
    paths = document.get("paths", {})
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
        for method, operation in item.items():
            if path in _OPEN_PATHS:
                operation["security"] = []
            elif settings.anonymous_subscribe and (path, method) in _READS:
                # A credential is optional: anyone may subscribe (to public events).
                operation["security"] = [*document["security"], {}]
