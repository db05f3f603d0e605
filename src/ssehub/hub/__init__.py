"""The standalone hub: an HTTP API over :class:`ssehub.Broker`, served by ``ssehub serve``.

::

    from ssehub.hub import HubSettings, create_app

    app = create_app(HubSettings(history=5000))  # run with any ASGI server

Endpoints: ``GET /events`` (SSE, exact ``Last-Event-ID`` resume), ``POST /publish`` (one event
or an all-or-nothing batch), ``GET /status``, ``GET /health``, ``GET /openapi.json``,
``GET /docs``. Every error is JSON: ``{"error": "<code>", "detail": "<text>"}``.
"""

from __future__ import annotations

from .._logging import JsonFormatter, RequestIdMiddleware, TextFormatter, logging_config, redact
from ._app import RESET_HEADER, HubState, create_app
from ._auth import Principal, principal_of
from ._errors import ERROR_CODES
from ._openapi import openapi_document
from ._patterns import TopicPatterns
from ._publish import PublishRequest, parse_publish_body
from ._settings import HubSettings
from ._tokens import TokenVerifier

__all__ = [
    "ERROR_CODES",
    "RESET_HEADER",
    "HubSettings",
    "HubState",
    "JsonFormatter",
    "Principal",
    "PublishRequest",
    "RequestIdMiddleware",
    "TextFormatter",
    "TokenVerifier",
    "TopicPatterns",
    "create_app",
    "logging_config",
    "openapi_document",
    "parse_publish_body",
    "principal_of",
    "redact",
]
