"""Structured logs: readable text or JSON lines, request ids, and redaction of secrets.

Standard library logging only. :func:`logging_config` returns a ``dictConfig`` dictionary that
``ssehub serve`` hands to uvicorn (so uvicorn's own loggers and ``ssehub`` share one handler),
with a formatter for each format:

- ``text`` (default): ``2026-01-02 03:04:05,678 INFO ssehub.hub [3f2a9c1e] message``;
- ``json``: one JSON object per line, ``{"time", "level", "logger", "message", "request_id"}``
  plus ``exception`` when there is one, for log shippers (Loki, Elasticsearch, CloudWatch).

:class:`RequestIdMiddleware` gives every HTTP request an id: a sane incoming ``X-Request-ID``
(from a proxy that already assigned one) or a new random one. The id is echoed in the response
header and held in a context variable for the request's duration, so every record logged while
handling it, uvicorn's access line included, carries it.

Secrets never reach a handler: :class:`RedactingFilter` rewrites ``Authorization`` and cookie
values, bearer tokens and ``token``-like query parameters in every record's message and
arguments (uvicorn's access log puts the whole path with its query string in its arguments).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "LOG_FORMATS",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RedactingFilter",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "TextFormatter",
    "bind_request_id",
    "current_request_id",
    "logging_config",
    "new_request_id",
    "redact",
    "sane_request_id",
    "unbind_request_id",
]

LOG_FORMATS: Final = ("text", "json")
"""The values of ``--log-format``."""

REQUEST_ID_HEADER: Final = "X-Request-ID"
"""The request and response header that carries the request id."""

REDACTED: Final = "[redacted]"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ssehub_request_id", default=None
)

# An incoming id is kept only if it is short and plain: it is written into every log line of
# the request and echoed in a header, so nothing that could forge a line or a header passes.
_SANE_ID: Final = re.compile(r"[A-Za-z0-9._:@+/=-]{1,128}")

# Query parameters whose values are credentials (``token`` is the hub's own; the others are
# common spellings that a client may add). Matched case-insensitively, in any text.
_HIDDEN_PARAMS: Final = "token|access_token|id_token|refresh_token|api_key|apikey|key|jwt|password"
_QUERY_SECRET: Final = re.compile(rf"(?i)(\b(?:{_HIDDEN_PARAMS})=)[^&#\s\"']*")
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_HEADER_SECRET: Final = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)"
    r"([\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]*"
)


# The attributes every LogRecord has (and the ones our formatters add): anything else on a
# record came from ``extra=`` and belongs in the JSON document.
_RECORD_FIELDS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request",
    "request_id",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
    "taskName",
}


def current_request_id() -> str | None:
    """Return the id of the request being handled in this context, or ``None``."""
    return _request_id.get()


def redact(text: str) -> str:
    """Return ``text`` with credentials replaced by ``[redacted]``.

    Covers ``Authorization``/``Cookie``/``X-API-Key`` header values written as ``name: value``
    or ``name=value``, ``Bearer``/``Basic`` credentials, and the values of query parameters
    such as ``token``, ``access_token`` and ``api_key``.

    Args:
        text: any text about to be logged.

    Returns:
        The text with secrets removed (unchanged when it holds none).
    """
    text = _HEADER_SECRET.sub(rf"\1\2{REDACTED}", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    return _QUERY_SECRET.sub(rf"\1{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """A filter that removes secrets from each record's message (never drops a record).

    The message is formatted with its arguments first and the result redacted: uvicorn's
    access log, for one, passes the path with its query string as an argument, and redacting
    the template alone could leave its placeholders without their arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it.

        Args:
            record: the record about to be handled.

        Returns:
            ``True``.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # logging reports the broken call itself; nothing to redact here
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


class RequestIdFilter(logging.Filter):
    """A filter that sets ``record.request_id`` (``"-"`` outside a request; never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the current request id to ``record``.

        Args:
            record: the record about to be handled.

        Returns:
            ``True``.
        """
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    """Readable lines: time, level, logger, ``[request id]`` when there is one, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as one readable line (plus a traceback when there is one).

        Args:
            record: the record.

        Returns:
            The text.
        """
        request_id = getattr(record, "request_id", None) or _request_id.get()
        record.request = f" [{request_id}]" if request_id and request_id != "-" else ""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with UTC ISO 8601 times and the request id."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as one line of JSON.

        Args:
            record: the record.

        Returns:
            ``{"time", "level", "logger", "message", "request_id"}``, plus the fields given
            with ``extra=`` and ``exception`` (the formatted traceback) when there is one.
        """
        request_id = getattr(record, "request_id", None) or _request_id.get()
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(
                record.created, datetime.timezone.utc
            ).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": None if request_id in (None, "-") else request_id,
        }
        for key, value in record.__dict__.items():
            # Fields given with ``extra=`` become top-level keys (strings redacted too).
            if key not in _RECORD_FIELDS and key not in document:
                document[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(document, ensure_ascii=False, default=str)


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dictionary for the hub and uvicorn.

    Args:
        level: ``critical``, ``error``, ``warning``, ``info``, ``debug`` or ``trace``
            (uvicorn's extra level; ``ssehub`` loggers treat it as ``debug``).
        fmt: ``text`` (readable) or ``json`` (one object per line).

    Returns:
        The configuration: one stderr handler with the redaction and request-id filters,
        used by the ``ssehub``, ``uvicorn``, ``uvicorn.error`` and ``uvicorn.access`` loggers.

    Raises:
        ValueError: ``fmt`` is not one of :data:`LOG_FORMATS`.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    numeric = "DEBUG" if level == "trace" else level.upper()
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "formatter": fmt,
        "filters": ["request_id", "redact"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "redact": {"()": RedactingFilter},
        },
        "formatters": {fmt: {"()": formatter}},
        "handlers": {"default": handler},
        "loggers": {
            "ssehub": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn.error": {"level": numeric},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


def new_request_id() -> str:
    """Return a fresh request id: 16 random hex digits."""
    return secrets.token_hex(8)


def sane_request_id(value: str | None) -> str | None:
    """Return ``value`` if it may be used as a request id (1-128 plain characters), else None.

    Args:
        value: an incoming ``X-Request-ID`` header value, or ``None``.
    """
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return None


class RequestIdMiddleware:
    """ASGI middleware: a request id per HTTP request, in the logs and the response header.

    Args:
        app: the wrapped ASGI app.
        header: the header to read and echo (default ``X-Request-ID``).
    """

    def __init__(self, app: ASGIApp, header: str = REQUEST_ID_HEADER) -> None:
        self.app = app
        self.header = header
        self._raw_header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection; only ``http`` scopes get an id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.identify(scope)
        raw_id = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = self.stamp(message, raw_id)
            await send(message)

        token = bind_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind_request_id(token)

    def identify(self, scope: Scope) -> str:
        """Return the request's id (the client's when sane, else a new one), kept in the scope.

        The hub's ``GET /events`` dispatcher (``hub/_dispatch.py``) calls this, :meth:`stamp`
        and :func:`bind_request_id` directly, so a stream gets the same id as any request.
        """
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == self._raw_header:
                incoming = sane_request_id(value.decode("latin-1"))
                break
        request_id = incoming or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        return request_id

    def stamp(self, message: Message, raw_id: bytes) -> Message:
        """Return the ``http.response.start`` message with the id header (replacing the app's)."""
        headers = [
            (name, value)
            for name, value in message.get("headers", ())
            if name.lower() != self._raw_header
        ]
        headers.append((self._raw_header, raw_id))
        return {**message, "headers": headers}


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    """Make ``request_id`` the current request's id for log records; returns the reset token."""
    return _request_id.set(request_id)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    """Undo :func:`bind_request_id`."""
    _request_id.reset(token)
