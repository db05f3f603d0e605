"""EventSourceResponse: content kinds, item kinds, byte-exact output and headers."""

from __future__ import annotations

import contextvars
import enum
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from starlette.background import BackgroundTask

from ssehub import EventValidationError, JSONServerSentEvent, ServerSentEvent
from ssehub.response import EventSourceResponse
from ssehub.testing import stream_asgi

pytestmark = pytest.mark.anyio

OPEN_LF = b": ok\n\n"
OPEN_CRLF = b": ok\r\n\r\n"


async def body_of(response: EventSourceResponse, method: str = "GET") -> bytes:
    with anyio.fail_after(5):
        async with stream_asgi(response, method=method) as stream:
            return await stream.read_all()


async def agen(*items: Any) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def test_every_item_kind_byte_exact_with_crlf() -> None:
    items = [
        ServerSentEvent("a", event="e", id="1", retry=5, comment="c", sep="\r\n"),
        {"data": "d", "event": "ev", "id": 7, "retry": 10, "comment": "hi"},
        "plain",
        "two\nlines",
        b"raw: as is\r\n\r\n",
        42,
        1.5,
        JSONServerSentEvent({"k": [1, 2]}, sep="\r\n"),
    ]
    body = await body_of(EventSourceResponse(agen(*items), sep="\r\n", ping=0))
    assert body == (
        OPEN_CRLF
        + b": c\r\nid: 1\r\nevent: e\r\ndata: a\r\nretry: 5\r\n\r\n"
        + b": hi\r\nid: 7\r\nevent: ev\r\ndata: d\r\nretry: 10\r\n\r\n"
        + b"data: plain\r\n\r\n"
        + b"data: two\r\ndata: lines\r\n\r\n"
        + b"raw: as is\r\n\r\n"
        + b"data: 42\r\n\r\n"
        + b"data: 1.5\r\n\r\n"
        + b'data: {"k":[1,2]}\r\n\r\n'
    )


async def test_default_separator_is_lf() -> None:
    body = await body_of(EventSourceResponse(agen("x", {"data": "y", "id": "1"}), ping=0))
    assert body == OPEN_LF + b"data: x\n\nid: 1\ndata: y\n\n"


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
async def test_dict_items_use_the_response_separator_and_are_not_mutated(sep: str) -> None:
    item = {"data": "line1\nline2", "event": "up", "sep": "\n"}
    snapshot = dict(item)
    body = await body_of(EventSourceResponse(agen(item, item), sep=sep, ping=0))
    frame = f"event: up{sep}data: line1{sep}data: line2{sep}{sep}".encode()
    assert body == f": ok{sep}{sep}".encode() + frame + frame
    assert item == snapshot


async def test_event_objects_keep_their_own_separator() -> None:
    event = ServerSentEvent("x", sep="\r\n")
    body = await body_of(EventSourceResponse(agen(event), sep="\n", ping=0))
    assert body == OPEN_LF + b"data: x\r\n\r\n"


async def test_sync_iterable_runs_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []
    closed: list[bool] = []

    def numbers() -> Iterator[int]:
        try:
            for i in range(3):
                threads.append(threading.get_ident())
                yield i
        finally:
            closed.append(True)

    body = await body_of(EventSourceResponse(numbers(), ping=0))
    assert body == OPEN_LF + b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert threads
    assert loop_thread not in threads
    assert closed == [True]


async def test_plain_list_content() -> None:
    body = await body_of(EventSourceResponse(["a", "b"], ping=0))
    assert body == OPEN_LF + b"data: a\n\ndata: b\n\n"


async def test_memory_object_stream_with_data_sender_callable() -> None:
    send, receive = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def sender() -> None:
        async with send:
            for i in range(3):
                await send.send({"data": f"n{i}", "id": i})

    response = EventSourceResponse(receive, data_sender_callable=sender, ping=0)
    body = await body_of(response)
    assert body == OPEN_LF + b"id: 0\ndata: n0\n\nid: 1\ndata: n1\n\nid: 2\ndata: n2\n\n"


async def test_headers() -> None:
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(agen(), headers={"X-Custom": "1"})) as stream:
            await stream.start()
            await stream.read_all()
    headers = stream.headers
    assert stream.status_code == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-custom"] == "1"
    assert "content-length" not in headers
    assert "connection" not in headers


async def test_header_overrides_and_status() -> None:
    response = EventSourceResponse(
        agen(), status_code=201, headers={"Cache-Control": "public, max-age=1"}
    )
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            await stream.start()
    assert stream.status_code == 201
    assert stream.headers["cache-control"] == "public, max-age=1"


async def test_head_sends_headers_and_never_starts_the_generator() -> None:
    started: list[bool] = []
    ran: list[bool] = []

    async def gen() -> AsyncIterator[str]:
        started.append(True)
        yield "never"

    async def task() -> None:
        ran.append(True)

    response = EventSourceResponse(gen(), background=BackgroundTask(task))
    with anyio.fail_after(5):
        async with stream_asgi(response, method="HEAD") as stream:
            await stream.start()
            assert await stream.read_all() == b""
            await stream.wait_closed()
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert started == []
    assert ran == [True]


async def test_background_task_runs_after_the_stream() -> None:
    order: list[str] = []

    async def gen() -> AsyncIterator[str]:
        order.append("event")
        yield "x"

    async def task() -> None:
        order.append("background")

    await body_of(EventSourceResponse(gen(), background=BackgroundTask(task), ping=0))
    assert order == ["event", "background"]


async def test_bad_items_raise_typed_errors() -> None:
    with pytest.raises(EventValidationError):
        await body_of(EventSourceResponse(agen({"a", "set"}), ping=0))
    with pytest.raises(TypeError, match="unknown SSE field"):
        await body_of(EventSourceResponse(agen({"data": "x", "colour": "red"}), ping=0))
    with pytest.raises(EventValidationError):
        await body_of(EventSourceResponse(agen({"data": "x", "id": "a\nb"}), ping=0))
    # A lone surrogate has no UTF-8 form: a typed error, not a UnicodeEncodeError.
    with pytest.raises(EventValidationError):
        await body_of(EventSourceResponse(agen("ok \ud800"), ping=0))


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "item",
    [object(), Colour.RED, True, {1, 2}, None, ServerSentEvent],
    ids=["object", "plain-enum", "bool", "set", "none", "class"],
)
async def test_items_without_a_text_form_are_refused_not_sent_as_repr(item: object) -> None:
    # sse-starlette would send str(item): "<object object at 0x...>", "Colour.RED", "True".
    with pytest.raises(EventValidationError, match=type(item).__name__) as info:
        await body_of(EventSourceResponse(agen(item), ping=0))
    assert "JSONServerSentEvent" in str(info.value)


@pytest.mark.parametrize("data", [object(), Colour.RED])
async def test_dict_items_with_repr_prone_data_are_refused(data: object) -> None:
    with pytest.raises(EventValidationError, match="JSONServerSentEvent"):
        await body_of(EventSourceResponse(agen({"data": data}), ping=0))


async def test_numbers_and_int_enums_are_data_text_as_in_sse_starlette() -> None:
    body = await body_of(EventSourceResponse(agen(7, -2.5, Level.HIGH, "s"), ping=0))
    assert body == OPEN_LF + b"data: 7\n\ndata: -2.5\n\ndata: 3\n\ndata: s\n\n"


async def test_str_subclass_items_are_sent_as_their_text() -> None:
    class Kind(str, enum.Enum):
        UPDATE = "update"

    body = await body_of(EventSourceResponse(agen(Kind.UPDATE), ping=0))
    assert body == OPEN_LF + b"data: update\n\n"


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="sep"):
        EventSourceResponse([], sep="\n\n")
    with pytest.raises(ValueError, match="shutdown_grace_period"):
        EventSourceResponse([], shutdown_grace_period=-1)
    with pytest.raises(ValueError, match="cleanup_timeout"):
        EventSourceResponse([], cleanup_timeout=-1)
    with pytest.raises(ValueError, match="ping"):
        EventSourceResponse([], ping=-1)
    with pytest.raises(TypeError, match="ping"):
        EventSourceResponse([], ping="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="content"):
        EventSourceResponse(5)  # type: ignore[arg-type]
    response = EventSourceResponse([])
    assert response.ping_interval == 15
    assert response.sep == "\n"
    assert response.media_type == "text/event-stream"


async def test_custom_media_type() -> None:
    response = EventSourceResponse(agen(), media_type="text/plain")
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            await stream.start()
    assert stream.headers["content-type"] == "text/plain; charset=utf-8"


async def test_websocket_scope_gets_denial_message_types() -> None:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Any) -> None:
        messages.append(message)

    with anyio.fail_after(5):
        await EventSourceResponse(agen("x"), ping=0)({"type": "websocket"}, receive, send)
    assert [m["type"] for m in messages] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
        "websocket.http.response.body",
        "websocket.http.response.body",
    ]


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_contextvars_reach_async_and_sync_generators() -> None:
    seen: list[str] = []

    async def agen_reads() -> AsyncIterator[str]:
        seen.append(request_id.get())
        yield "a"

    def gen_reads() -> Iterator[str]:
        seen.append(request_id.get())
        yield "b"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        request_id.set("req-42")
        await EventSourceResponse(agen_reads(), ping=0)(scope, receive, send)
        await EventSourceResponse(gen_reads(), ping=0)(scope, receive, send)

    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Any) -> None:
        messages.append(message)

    with anyio.fail_after(5):
        await app({"type": "http", "method": "GET"}, receive, send)
    assert seen == ["req-42", "req-42"]


async def test_disconnect_closes_a_sync_generator_once() -> None:
    finally_runs: list[str] = []

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "tick"
        finally:
            finally_runs.append("finally")

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(endless(), ping=0)) as stream:
            assert (await stream.events().next_event()).data == "tick"
            await stream.disconnect()
            await stream.wait_closed()
    assert finally_runs == ["finally"]
