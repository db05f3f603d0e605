"""Structured data in content items goes out as JSON; data with no JSON form fails loudly.

Issue 19 item 3: ``yield {"data": {"a": 1}}`` used to end the stream after ``: ok`` with the
reason only in the server log, and a browser then reconnects forever. Now such data is JSON (as
in FastAPI's own SSE), and data with no JSON form raises :class:`~ssehub.EventValidationError`
out of the response's ASGI call without a clean end of the body.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from ssehub import EventValidationError
from ssehub.response import EventSourceResponse
from ssehub.testing import ASGIStream, http_scope, stream_asgi

pytestmark = pytest.mark.anyio

OPEN = b": ok\n\n"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(BaseModel):
    name: str
    born: datetime.date  # pydantic writes it; the plain JSON rules would refuse a date


class Tick(msgspec.Struct):
    n: int
    at: datetime.datetime


class Opaque(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: object


class NoJSON:
    """A plain object: no JSON form."""


async def agen(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def body_of(response: EventSourceResponse) -> bytes:
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            return await stream.read_all()


ANN = User(name="ann", born=datetime.date(2000, 1, 2))
TICK = Tick(1, datetime.datetime(2026, 5, 1, 12, 0))

STRUCTURED = [
    pytest.param({"a": 1, "b": [True, None]}, b'{"a":1,"b":[true,null]}', id="dict"),
    pytest.param([1, "two", 3.5], b'[1,"two",3.5]', id="list"),
    pytest.param((1, 2), b"[1,2]", id="tuple"),
    pytest.param({"text": "\u00e9\u20ac"}, '{"text":"\u00e9\u20ac"}'.encode(), id="utf-8"),
    pytest.param(Point(1, 2), b'{"x":1,"y":2}', id="dataclass"),
    pytest.param(ANN, b'{"name":"ann","born":"2000-01-02"}', id="pydantic"),
    pytest.param(TICK, b'{"n":1,"at":"2026-05-01T12:00:00"}', id="msgspec"),
    pytest.param(
        {"user": ANN, "points": [Point(0, 1)]},
        b'{"user":{"name":"ann","born":"2000-01-02"},"points":[{"x":0,"y":1}]}',
        id="nested",
    ),
]


@pytest.mark.parametrize(("data", "json"), STRUCTURED)
async def test_dict_item_data_is_sent_as_json(data: Any, json: bytes) -> None:
    item = {"data": data, "event": "update", "id": 7}
    before = dict(item)
    body = await body_of(EventSourceResponse(agen(item), ping=0))
    assert body == OPEN + b"id: 7\nevent: update\ndata: " + json + b"\n\n"
    assert item == before  # the caller's dict is never mutated


@pytest.mark.parametrize(
    ("data", "json"), [p for p in STRUCTURED if not isinstance(p.values[0], dict)]
)
async def test_bare_structured_items_are_sent_as_json_data(data: Any, json: bytes) -> None:
    body = await body_of(EventSourceResponse(agen(data), sep="\r\n", ping=0))
    assert body == b": ok\r\n\r\ndata: " + json + b"\r\n\r\n"


async def test_a_bare_dict_is_still_the_event_fields() -> None:
    # sse-starlette's meaning, kept: a dict item is the event's keyword arguments, not JSON data.
    body = await body_of(EventSourceResponse(agen({"data": "x", "event": "e"}), ping=0))
    assert body == OPEN + b"event: e\ndata: x\n\n"


async def test_text_and_numbers_in_data_keep_their_text_form() -> None:
    items = [{"data": "plain"}, {"data": 5}, {"data": 1.5}, {"data": '{"already": "json"}'}]
    body = await body_of(EventSourceResponse(agen(*items), ping=0))
    assert body == OPEN + b'data: plain\n\ndata: 5\n\ndata: 1.5\n\ndata: {"already": "json"}\n\n'


async def test_a_sync_generator_gets_the_same_json() -> None:
    def numbers() -> Iterator[Any]:
        yield {"data": {"n": 1}}
        yield Point(2, 3)

    body = await body_of(EventSourceResponse(numbers(), ping=0))
    assert body == OPEN + b'data: {"n":1}\n\ndata: {"x":2,"y":3}\n\n'


UNSERIALISABLE = [
    pytest.param({"data": {"thing": NoJSON()}}, "NoJSON", id="object-in-dict"),
    pytest.param({"data": [datetime.datetime(2026, 1, 1)]}, "datetime", id="datetime-in-list"),
    pytest.param({"data": {"x": math.nan}}, "not JSON compliant", id="nan"),
    pytest.param({"data": Opaque(thing=NoJSON())}, "Opaque", id="pydantic-field"),
    pytest.param([Point(1, 2), {1, 2}], "set", id="set-in-bare-list"),
]


async def to_the_end(stream: ASGIStream) -> None:
    await stream.start()
    await stream.wait_closed()


def app_for(make_content: Any) -> Starlette:
    async def events(request: Request) -> Response:
        return EventSourceResponse(make_content(), ping=0)

    return Starlette(routes=[Route("/events", events)])


@pytest.mark.parametrize(("item", "named"), UNSERIALISABLE)
async def test_data_with_no_json_form_raises_out_of_the_asgi_call(item: Any, named: str) -> None:
    # Through a whole Starlette app: its error middleware must let the error through to the
    # server (which logs it), and the body must not end cleanly.
    app = app_for(lambda: agen("first", item))
    with anyio.fail_after(5):
        async with stream_asgi(app, "/events") as stream:
            # Raised as soon as the producer meets the item: before or after the response start
            # reached the test, as the tasks happen to be scheduled.
            with pytest.raises(EventValidationError, match="no JSON form") as info:
                await to_the_end(stream)
    assert named in str(info.value)
    assert info.value.field == "data"
    assert not stream.complete


async def test_an_error_handler_sees_the_error_with_the_route() -> None:
    # Starlette's error middleware does not log by itself (the server logs what it re-raises);
    # an app's 500 handler is how to log it with the request, and it is called mid-stream too.
    seen: list[tuple[str, BaseException]] = []

    async def on_error(request: Request, exc: Exception) -> Response:
        seen.append((request.url.path, exc))
        return Response(status_code=500)

    app = app_for(lambda: agen({"data": NoJSON()}))
    app.add_exception_handler(500, on_error)
    with anyio.fail_after(5):
        async with stream_asgi(app, "/events") as stream:
            with pytest.raises(EventValidationError):
                await to_the_end(stream)
    assert [(path, type(exc)) for path, exc in seen] == [("/events", EventValidationError)]


def _async_content(gate: threading.Event) -> AsyncIterator[Any]:
    async def events() -> AsyncIterator[Any]:
        yield "first"
        await anyio.to_thread.run_sync(gate.wait)
        yield {"data": {"thing": NoJSON()}}

    return events()


def _sync_content(gate: threading.Event) -> Iterator[Any]:
    def events() -> Iterator[Any]:
        yield "first"
        gate.wait()
        yield {"data": {"thing": NoJSON()}}

    return events()


@pytest.mark.parametrize("content", [_async_content, _sync_content], ids=["async", "sync"])
async def test_an_idle_stream_that_fails_never_ends_cleanly(content: Any) -> None:
    # The trap of issue 19 item 3 under a real server: the stream is idle (everything so far
    # sent), then the generator yields data with no JSON form. uvicorn's send writes without a
    # checkpoint, so a clean end of the body queued by the failing producer would reach the
    # client before the error ends the response: the browser then sees a normal end and
    # reconnects into the same error forever. This send behaves like uvicorn's.
    gate = threading.Event()
    sent: list[Message] = []
    first_sent = anyio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if b"first" in message.get("body", b""):
            first_sent.set()

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    errors: list[Exception] = []

    async def run() -> None:
        try:
            await EventSourceResponse(content(gate), ping=0)(http_scope(), receive, send)
        except Exception as exc:
            errors.append(exc)

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                await first_sent.wait()
                gate.set()
    finally:
        gate.set()  # never leave a worker thread blocked
    assert [type(exc) for exc in errors] == [EventValidationError], errors
    assert "NoJSON" in str(errors[0])
    # No final empty body: the server cuts the connection instead, and logs the error.
    assert [m.get("more_body") for m in sent[1:]] == [True] * (len(sent) - 1), sent
