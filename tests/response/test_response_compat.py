"""Drop-in compatibility with sse-starlette 3.x, checked against the real package.

sse-starlette is a dev dependency, so these tests compare with the code users migrate from: the
constructor signatures, the bytes written for the same items when the separator is given
explicitly, and the response headers. Every difference is deliberate and listed in
docs/response.md (the ``: ok`` opening comment, the default separator ``\\n``, no ``Connection``
header, validation instead of stripping).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import sse_starlette

import ssehub
from ssehub.testing import stream_asgi

pytestmark = pytest.mark.anyio

FIELD_SETS: list[dict[str, Any]] = [
    {"data": "plain"},
    {"data": ""},
    {"data": " leading space"},
    {"data": "multi\nline\r\ntext\rhere"},
    {"data": "x", "event": "update"},
    {"data": "x", "id": "42"},
    {"data": "x", "retry": 2500},
    {"data": "x", "comment": "a comment"},
    {"data": "x", "comment": "two\nlines"},
    {"comment": "only a comment"},
    {"id": "9"},
    {"data": "all", "event": "e", "id": "7", "retry": 0, "comment": "c"},
    {"data": "unicode \u2026 \U0001f600", "event": "caf\u00e9"},
]


def _parameters(func: Any) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(func).parameters.values()
        if p.name != "self"
    ]


def test_event_source_response_signature_matches() -> None:
    # Same names, order, kinds and defaults: positional and keyword calls written for
    # sse-starlette mean the same thing here.
    assert _parameters(ssehub.EventSourceResponse.__init__) == _parameters(
        sse_starlette.EventSourceResponse.__init__
    )


def test_server_sent_event_signature_matches() -> None:
    assert _parameters(ssehub.ServerSentEvent.__init__) == _parameters(
        sse_starlette.ServerSentEvent.__init__
    )


def test_the_same_names_are_exported() -> None:
    for name in ("EventSourceResponse", "ServerSentEvent", "JSONServerSentEvent"):
        assert hasattr(ssehub, name), name
    assert issubclass(ssehub.SendTimeoutError, TimeoutError)


@pytest.mark.parametrize("sep", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
@pytest.mark.parametrize("fields", FIELD_SETS, ids=repr)
def test_events_encode_byte_identically(fields: dict[str, Any], sep: str) -> None:
    ours = ssehub.ServerSentEvent(**fields, sep=sep).encode()
    theirs = sse_starlette.ServerSentEvent(**fields, sep=sep).encode()
    assert ours == theirs


@pytest.mark.parametrize(
    "value", [{"a": 1, "b": [1, 2, None]}, [1, "x"], "text", 3, None, {"u": "\u00e9\u2026"}]
)
def test_json_events_encode_byte_identically(value: Any) -> None:
    ours = ssehub.JSONServerSentEvent(value, event="j", sep="\r\n").encode()
    theirs = sse_starlette.JSONServerSentEvent(value, event="j", sep="\r\n").encode()
    assert ours == theirs


async def _body(response: Any) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            body = await stream.read_all()
            return body, sorted(stream.headers.raw)


def _items(library: Any) -> list[Any]:
    """The same stream, built with each library's own types."""
    return [
        "plain text",
        "multi\nline",
        42,
        {"data": "from a dict", "event": "d", "id": "1", "retry": 10, "comment": "hi"},
        {"data": "x\ry"},
        library.ServerSentEvent("event object", event="e", id="2", sep="\r\n"),
        b"data: raw bytes\r\n\r\n",
    ]


async def _gen(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def test_a_stream_is_byte_identical_after_the_opening_comment() -> None:
    ours, our_headers = await _body(
        ssehub.EventSourceResponse(_gen(_items(ssehub)), sep="\r\n", ping=0)
    )
    theirs, their_headers = await _body(
        sse_starlette.EventSourceResponse(_gen(_items(sse_starlette)), sep="\r\n", ping=0)
    )
    # The one extra: ": ok" flushes headers and a first chunk at once (GZipMiddleware and
    # proxies otherwise hold the stream back until the first event).
    assert ours == b": ok\r\n\r\n" + theirs
    # Same headers, minus the hop-by-hop "Connection: keep-alive" (forbidden in HTTP/2; the
    # server decides it).
    assert [h for h in their_headers if h[0] != b"connection"] == our_headers
    assert (b"cache-control", b"no-store") in our_headers
    assert (b"x-accel-buffering", b"no") in our_headers
    assert (b"content-type", b"text/event-stream; charset=utf-8") in our_headers
    assert not any(name == b"content-length" for name, _ in our_headers)


async def test_the_default_separator_is_the_one_deliberate_byte_difference() -> None:
    ours, _ = await _body(ssehub.EventSourceResponse(_gen(["a", "b"]), ping=0))
    theirs, _ = await _body(sse_starlette.EventSourceResponse(_gen(["a", "b"]), ping=0))
    assert theirs == b"data: a\r\n\r\ndata: b\r\n\r\n"
    assert ours == b": ok\n\ndata: a\n\ndata: b\n\n"


@pytest.mark.parametrize(
    "fields",
    [{"event": "x\ndata: evil"}, {"id": "1\r\nevent: spoof"}, {"id": "a\x00"}],
    ids=repr,
)
def test_injection_is_refused_where_sse_starlette_strips(fields: dict[str, Any]) -> None:
    # sse-starlette silently strips CR/LF (and keeps NUL); ssehub refuses, as a ValueError.
    sse_starlette.ServerSentEvent("x", **fields).encode()
    with pytest.raises(ValueError, match="must not contain"):
        ssehub.ServerSentEvent("x", **fields)
