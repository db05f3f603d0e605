"""Structured logs: formats, request ids, and secrets that never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from integration.test_hub_server import free_port
from ssehub._logging import (
    JsonFormatter,
    RedactingFilter,
    RequestIdFilter,
    RequestIdMiddleware,
    TextFormatter,
    current_request_id,
    logging_config,
    redact,
)
from ssehub.cli import serve as serve_cli
from ssehub.hub import HubSettings

TIMEOUT = 15.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET /events?topic=a&token=eyJ.abc.def HTTP/1.1",
            "GET /events?topic=a&token=[redacted] HTTP/1.1",
        ),
        ("/x?access_token=s3cr3t#frag", "/x?access_token=[redacted]#frag"),
        ("/x?API_KEY=k&topic=t", "/x?API_KEY=[redacted]&topic=t"),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: [redacted]"),
        ("sent bearer abc.def-ghi to the hub", "sent bearer [redacted] to the hub"),
        ("{'cookie': 'session=abc; other=def'}", "{'cookie': '[redacted]'}"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "[redacted]"}'),
        ("x-api-key=abcdef", "x-api-key=[redacted]"),
        ("topic=tokens&data=monkey", "topic=tokens&data=monkey"),  # not a secret parameter
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("ssehub.test", logging.INFO, __file__, 1, msg, args, None)


def test_redacting_filter_rewrites_arguments() -> None:
    # uvicorn's access log: the full path with its query string is an argument.
    record = _record(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/events?token=abc", "1.1", 200
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /events?token=[redacted] HTTP/1.1" 200'
    mapping = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "%(h)s", ({"h": b"Bearer xyz"},), None
    )
    RedactingFilter().filter(mapping)
    assert mapping.getMessage() == "b'Bearer [redacted]'"
    # A template whose own text is redacted keeps working (formatted first, then redacted).
    template = _record("Authorization: %s", "Bearer abc")
    RedactingFilter().filter(template)
    assert template.getMessage() == "Authorization: [redacted]"


def test_json_formatter() -> None:
    record = _record("published %s to %d subscribers", "a-1", 3)
    record.request_id = "req-7"
    line = JsonFormatter().format(record)
    document = json.loads(line)
    assert document["message"] == "published a-1 to 3 subscribers"
    assert document["level"] == "INFO"
    assert document["logger"] == "ssehub.test"
    assert document["request_id"] == "req-7"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", document["time"])
    assert "\n" not in line
    extra = _record("stream ended")
    extra.topic = "orders"
    extra.url = "/events?token=abc"
    extra.count = 3
    fields = json.loads(JsonFormatter().format(extra))
    assert (fields["topic"], fields["url"], fields["count"]) == (
        "orders",
        "/events?token=[redacted]",
        3,
    )
    assert "args" not in fields
    assert "msg" not in fields
    try:
        raise ValueError("boom token=abc")
    except ValueError:
        failing = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    failed = json.loads(JsonFormatter().format(failing))
    assert "ValueError: boom token=abc" not in failed["exception"]
    assert failed["request_id"] is None


def test_text_formatter_shows_the_request_id_only_inside_requests() -> None:
    record = _record("hello")
    record.request_id = "abc"
    assert TextFormatter().format(record).endswith(" INFO ssehub.test [abc] hello")
    outside = _record("hello")
    RequestIdFilter().filter(outside)
    assert outside.request_id == "-"
    assert TextFormatter().format(outside).endswith(" INFO ssehub.test hello")


def test_logging_config_is_valid_and_redacts() -> None:
    config = logging_config("debug", "json")
    assert config["loggers"]["ssehub"]["level"] == "DEBUG"
    assert logging_config("trace")["loggers"]["uvicorn"]["level"] == "DEBUG"
    with pytest.raises(ValueError, match="log format"):
        logging_config("info", "xml")
    # Build the configured handler on a private logger (dictConfig would touch global ones).
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("ssehub.tests.private")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("Authorization: %s", "Bearer top-secret")
    finally:
        logger.removeHandler(handler)
    assert "top-secret" not in stream.getvalue()
    assert json.loads(stream.getvalue())["message"] == "Authorization: [redacted]"


# -- request ids ----------------------------------------------------------------------------


def _app_logging_its_request_id(seen: list[str | None]) -> RequestIdMiddleware:
    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(current_request_id())
        return PlainTextResponse("ok", headers={"X-Request-ID": "set-by-the-app"})

    return RequestIdMiddleware(Starlette(routes=[Route("/", endpoint)]))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("3f2a9c1e-8d6b-4c1a-9e7f-0123456789ab", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("", False),
        ("new\nline", False),
        ("<script>", False),
    ],
)
async def test_request_id_is_kept_when_sane(incoming: str, kept: bool) -> None:
    seen: list[str | None] = []
    app = _app_logging_its_request_id(seen)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # httpx refuses a newline in a header value; send the raw bytes through the scope.
        headers = [(b"x-request-id", incoming.encode())]
        response = await client.get("/", headers=headers)
    echoed = response.headers.get_list("x-request-id")
    assert len(echoed) == 1  # the app's own header is replaced, not duplicated
    assert seen == echoed
    if kept:
        assert echoed == [incoming]
    else:
        assert re.fullmatch(r"[0-9a-f]{16}", echoed[0])
    assert current_request_id() is None  # reset after the request


@pytest.mark.anyio
async def test_hub_echoes_request_ids(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    given = await client.get("/status", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    # Errors carry it too, so a user's report can be matched to the log line.
    missing = await client.get("/no/such/route", headers={"X-Request-ID": "trace-43"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "trace-43"


def test_cli_switches() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    serve_cli.add_parser(parser)
    args = parser.parse_args(["--no-dashboard", "--log-format", "json", "--metrics", "off"])
    cli = dict(vars(args))
    settings = HubSettings.from_sources(cli, {})
    assert (settings.dashboard, settings.metrics, settings.log_format) == (False, False, "json")
    assert HubSettings.from_sources({}, {"SSEHUB_LOG_FORMAT": "JSON"}).log_format == "json"
    assert HubSettings().dashboard
    assert HubSettings().metrics
    assert HubSettings().log_format == "text"


# -- the real server ------------------------------------------------------------------------


@contextmanager
def _serve_lines(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "authentication is" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(TIMEOUT), "the server did not start"
        assert process.poll() is None, "".join(lines)
        yield f"http://127.0.0.1:{port}", process, lines
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(TIMEOUT)
        reader.join(TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.integration
def test_json_access_log_with_request_ids_and_no_secrets() -> None:
    args = ("--log-format", "json", "--access-log", "on", "--grace-period", "1")
    # An unknown variable's warning is a JSON line too.
    with _serve_lines(*args, env={"SSEHUB_AUHT": "jwt"}) as (url, process, lines):
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            response = client.get(
                "/status",
                params={"token": "s3cr3t-token"},
                headers={"X-Request-ID": "req-abc", "Authorization": "Bearer s3cr3t-jwt"},
            )
            assert response.headers["x-request-id"] == "req-abc"
        process.terminate()
        assert process.wait(TIMEOUT) == 0
    documents = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [d for d in documents if d["logger"] == "uvicorn.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "req-abc"
    assert "/status?token=[redacted]" in access[0]["message"]
    assert "s3cr3t" not in "".join(lines)
    assert any("listening on" in d["message"] for d in documents)
    assert not any("color_message" in d for d in documents)  # uvicorn's ANSI duplicate
    assert any(
        d["level"] == "WARNING" and d["message"].startswith("SSEHUB_AUHT is not an ssehub setting")
        for d in documents
    )
