"""FastAPI's own SSE idiom on ssehub (``ssehub.fastapi``), against real FastAPI apps.

Every stream is driven through the whole FastAPI app with ``ssehub.testing.stream_asgi`` (scripted
``receive``/``send``), so routing, dependencies and middleware are FastAPI's own. Where the
behaviour is FastAPI's (item rules, OpenAPI), the same path operation is also served by FastAPI's
own SSE and the two are compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Response
from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
from fastapi.sse import ServerSentEvent
from pydantic import BaseModel

import ssehub
from ssehub import Broker, ConfigurationError, EventValidationError, Subscription
from ssehub.fastapi import EventSourceResponse, EventSourceRoute, item_schema
from ssehub.testing import stream_asgi

pytestmark = pytest.mark.anyio

TIMEOUT = 5


class Sub(BaseModel):
    a: int


class Item(BaseModel):
    n: int
    sub: Sub | None = None


class Row:
    """An ORM-like object: attributes, not a dict."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sub = None


def app_with(router: APIRouter, **include: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(router, **include)
    return app


def mixed_router(route_class: type | None) -> APIRouter:
    """One path operation with every kind of item, for ssehub and for FastAPI's own SSE."""
    router = APIRouter(route_class=route_class) if route_class else APIRouter()

    @router.get("/items", response_class=FastAPIEventSourceResponse)
    async def items(start: int = 0) -> AsyncIterable[Item]:
        """Items of several kinds."""
        yield Item(n=start, sub=Sub(a=1))
        yield {"n": start + 1, "extra": "dropped by validation"}
        yield Row(start + 2)
        yield ServerSentEvent(data={"k": [1, 2]}, event="custom", id="7", retry=1500)
        yield ServerSentEvent(raw_data="line one\nline two", comment="note")
        yield ServerSentEvent(data=Sub(a=5))

    return router


async def events_of(app: FastAPI, path: str, **kwargs: Any) -> list[tuple[str, Any, str]]:
    """Every event of a finite stream: (event type, data as JSON when it is, id)."""
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app, path, **kwargs) as stream:
            await stream.start()
            assert stream.status_code == 200
            events = await stream.events().rest()

    def data(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text

    return [(event.event, data(event.data), event.id) for event in events]


# --------------------------------------------------------------------------- streaming


async def test_items_follow_fastapi_rules_and_match_fastapi_own_sse() -> None:
    ours = await events_of(app_with(mixed_router(EventSourceRoute)), "/items?start=10")
    theirs = await events_of(app_with(mixed_router(None)), "/items?start=10")
    assert ours == [
        ("message", {"n": 10, "sub": {"a": 1}}, ""),
        ("message", {"n": 11, "sub": None}, ""),
        ("message", {"n": 12, "sub": None}, ""),
        ("custom", {"k": [1, 2]}, "7"),
        ("message", "line one\nline two", "7"),
        ("message", {"a": 5}, "7"),
    ]
    assert ours == theirs


async def test_wire_format_and_headers() -> None:
    app = app_with(mixed_router(EventSourceRoute))
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app, "/items") as stream:
            await stream.start()
            body = await stream.read_all()
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-store"
    assert stream.headers["x-accel-buffering"] == "no"
    assert body.startswith(b': ok\n\ndata: {"n":0,"sub":{"a":1}}\n\n')
    # FastAPI's own field order for its ServerSentEvent, compact JSON for data.
    assert b'event: custom\ndata: {"k":[1,2]}\nid: 7\nretry: 1500\n\n' in body
    assert b": note\ndata: line one\ndata: line two\n\n" in body


async def test_untyped_items_are_json_like_fastapi() -> None:
    router = APIRouter(route_class=EventSourceRoute)

    @router.get("/any", response_class=FastAPIEventSourceResponse)
    async def anything() -> AsyncIterator[Any]:
        yield "text"
        yield {"a": 1, "nan": float("nan")}
        yield [1, 2.5]
        yield 3

    assert await events_of(app_with(router), "/any") == [
        ("message", "text", ""),
        ("message", {"a": 1, "nan": None}, ""),
        ("message", [1, 2.5], ""),
        ("message", 3, ""),
    ]


async def test_sync_generator_runs_and_strings_are_quoted() -> None:
    router = APIRouter(route_class=EventSourceRoute)

    @router.get("/words", response_class=FastAPIEventSourceResponse)
    def words() -> Iterator[str]:
        yield "hello"
        yield "world"

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/words") as stream:
            await stream.start()
            body = await stream.read_all()
    assert body == b': ok\n\ndata: "hello"\n\ndata: "world"\n\n'


async def test_app_router_route_class_and_other_routes_untouched() -> None:
    app = FastAPI()
    app.router.route_class = EventSourceRoute

    @app.get("/stream", response_class=FastAPIEventSourceResponse)
    async def stream() -> AsyncIterable[Item]:
        yield Item(n=1)

    @app.get("/plain")
    async def plain() -> Item:
        return Item(n=2)

    assert await events_of(app, "/stream") == [("message", {"n": 1, "sub": None}, "")]
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app, "/plain") as response:
            await response.start()
            assert json.loads(await response.read_all()) == {"n": 2, "sub": None}
            assert response.headers["content-type"] == "application/json"


async def test_pings_while_the_generator_is_idle() -> None:
    class Fast(EventSourceResponse):
        DEFAULT_PING_INTERVAL = 0.01

    router = APIRouter(route_class=EventSourceRoute)
    release = anyio.Event()

    @router.get("/idle", response_class=Fast)
    async def idle() -> AsyncIterable[Item]:
        yield Item(n=1)
        await release.wait()
        yield Item(n=2)

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/idle") as stream:
            await stream.start()
            seen = await read_until(stream, b'data: {"n":1,"sub":null}\n\n')
            assert seen.startswith(b": ok\n\n")
            # Idle now: only pings come (each a timestamped comment) until the release.
            assert (await read_until(stream, b"\n\n")).startswith(b": ping - ")
            release.set()
            assert (await read_until(stream, b'data: {"n":2,"sub":null}\n\n')).endswith(
                b'data: {"n":2,"sub":null}\n\n'
            )


async def read_until(stream: Any, marker: bytes) -> bytes:
    """Body chunks joined until they end with ``marker`` (chunks may coalesce frames)."""
    seen = b""
    while not seen.endswith(marker):
        chunk = await stream.receive_chunk()
        assert chunk is not None, f"the body ended before {marker!r}: {seen!r}"
        seen += chunk
    return seen


async def test_disconnect_stops_the_generator_and_runs_its_finally() -> None:
    router = APIRouter(route_class=EventSourceRoute)
    finished = anyio.Event()
    cleanups: list[str] = []

    @router.get("/forever", response_class=FastAPIEventSourceResponse)
    async def forever() -> AsyncIterable[Item]:
        try:
            n = 0
            while True:
                yield Item(n=n)
                n += 1
                await anyio.sleep_forever()
        finally:
            cleanups.append("finally")
            finished.set()

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/forever") as stream:
            await stream.start()
            assert (await stream.events().next_event()).data == '{"n":0,"sub":null}'
            await stream.disconnect()
            await finished.wait()
            await stream.wait_closed()
    assert cleanups == ["finally"]


async def test_send_timeout_drops_a_client_that_does_not_read() -> None:
    class Strict(EventSourceResponse):
        DEFAULT_SEND_TIMEOUT = 0.05

    router = APIRouter(route_class=EventSourceRoute)
    closed = anyio.Event()

    @router.get("/flood", response_class=Strict)
    async def flood() -> AsyncIterable[str]:
        try:
            while True:
                yield "x" * 1000
        finally:
            closed.set()

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/flood", max_buffered_messages=1) as stream:
            await stream.start()
            await closed.wait()  # nobody reads: the send times out and the generator is closed
            with pytest.raises(ssehub.SendTimeoutError):
                await stream.wait_closed()


async def test_a_bad_item_ends_the_stream_with_a_typed_error() -> None:
    router = APIRouter(route_class=EventSourceRoute)
    received = anyio.Event()

    @router.get("/bad", response_class=FastAPIEventSourceResponse)
    async def bad() -> AsyncIterable[Item]:
        yield Item(n=1)
        await received.wait()  # the good event is out before the bad one ends the stream
        yield {"n": "not a number"}

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/bad") as stream:
            await stream.start()
            assert (await stream.events().next_event()).data == '{"n":1,"sub":null}'
            received.set()
            with pytest.raises(EventValidationError, match="Item"):
                await stream.wait_closed()


# --------------------------------------------------------------------------- FastAPI features

SESSION_LOG: list[str] = []


async def session() -> AsyncIterator[str]:
    """A dependency with yield (module level: annotations are resolved in the globals)."""
    SESSION_LOG.append("open")
    yield "db"
    SESSION_LOG.append("close")  # after the stream: dependencies with yield outlive it


def tagged(response: Response) -> None:
    response.headers["x-tag"] = "set by a dependency"
    response.headers["cache-control"] = "no-cache"


async def test_dependencies_response_parameter_and_status_code() -> None:
    router = APIRouter(route_class=EventSourceRoute)
    log = SESSION_LOG
    log.clear()

    @router.get(
        "/deps",
        response_class=FastAPIEventSourceResponse,
        status_code=201,
        dependencies=[Depends(tagged)],
    )
    async def deps(db: Annotated[str, Depends(session)], response: Response) -> AsyncIterable[str]:
        log.append(f"stream with {db}")
        yield db

    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/deps") as stream:
            await stream.start()
            body = await stream.read_all()
            await stream.wait_closed()
    assert stream.status_code == 201
    assert stream.headers["x-tag"] == "set by a dependency"
    assert stream.headers.getlist("cache-control") == ["no-cache"]
    assert body == b': ok\n\ndata: "db"\n\n'
    assert log == ["open", "stream with db", "close"]


async def test_request_validation_is_fastapi_own() -> None:
    app = app_with(mixed_router(EventSourceRoute))
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app, "/items?start=nope") as stream:
            await stream.start()
            detail = json.loads(await stream.read_all())
    assert stream.status_code == 422
    assert detail["detail"][0]["loc"] == ["query", "start"]


async def test_response_model_settings_apply_to_items() -> None:
    router = APIRouter(route_class=EventSourceRoute)

    @router.get(
        "/slim", response_class=FastAPIEventSourceResponse, response_model_exclude_none=True
    )
    async def slim() -> AsyncIterable[Item]:
        yield Item(n=1)

    assert await events_of(app_with(router), "/slim") == [("message", {"n": 1}, "")]


async def test_a_path_operation_may_return_a_response_or_an_iterable() -> None:
    router = APIRouter(route_class=EventSourceRoute)

    @router.get("/returns", response_class=FastAPIEventSourceResponse)
    async def returns(kind: str) -> Any:
        if kind == "response":
            return Response("not a stream", media_type="text/plain", status_code=409)
        return [Item(n=1), ServerSentEvent(raw_data="end")]

    assert await events_of(app_with(router), "/returns?kind=list") == [
        ("message", {"n": 1, "sub": None}, ""),
        ("message", "end", ""),
    ]
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app_with(router), "/returns?kind=response") as stream:
            await stream.start()
            assert await stream.read_all() == b"not a stream"
    assert stream.status_code == 409


# --------------------------------------------------------------------------- broker


async def test_resume_with_last_event_id_through_a_returned_subscription() -> None:
    broker = Broker()
    router = APIRouter(route_class=EventSourceRoute)

    @router.get("/feed/{topic}", response_class=FastAPIEventSourceResponse)
    async def feed(
        topic: str, last_event_id: Annotated[str | None, Header()] = None
    ) -> Subscription:
        return broker.subscribe(topic, last_event_id)

    app = app_with(router)
    with anyio.fail_after(TIMEOUT):
        async with broker:
            first = await broker.publish("news", {"title": "one"}, event="story")
            second = await broker.publish("news", {"title": "two"}, event="story")
            await broker.publish("other", "not for us")
            headers = {"last-event-id": first.id}
            async with stream_asgi(app, "/feed/news", headers=headers) as stream:
                await stream.start()
                replayed = await stream.events().next_event()
                assert (replayed.id, replayed.event, replayed.data) == (
                    second.id,
                    "story",
                    '{"title":"two"}',
                )
                third = await broker.publish("news", {"title": "three"}, event="story")
                live = await stream.events().next_event()
                assert (live.id, live.data) == (third.id, '{"title":"three"}')
                assert broker.subscriber_count("news") == 1
            # The client left: the response closed the subscription.
            assert broker.subscriber_count("news") == 0


async def test_resume_through_a_generator_that_iterates_a_subscription() -> None:
    broker = Broker()
    router = APIRouter(route_class=EventSourceRoute)
    released = anyio.Event()

    @router.get("/titles/{topic}", response_class=FastAPIEventSourceResponse)
    async def titles(
        topic: str, last_event_id: Annotated[str | None, Header()] = None
    ) -> AsyncIterable[Any]:
        try:
            async with broker.subscribe(topic, last_event_id) as subscription:
                async for item in subscription:
                    yield item
        finally:
            released.set()

    app = app_with(router)
    with anyio.fail_after(TIMEOUT):
        async with broker:
            first = await broker.publish("news", "a")
            second = await broker.publish("news", "b")
            headers = {"last-event-id": first.id}
            async with stream_asgi(app, "/titles/news", headers=headers) as stream:
                await stream.start()
                event = await stream.events().next_event()
                assert (event.id, event.data) == (second.id, "b")
                await stream.disconnect()
                await released.wait()
            assert broker.subscriber_count("news") == 0


# --------------------------------------------------------------------------- OpenAPI


def schema_operation(app: FastAPI, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = app.openapi()["paths"][path]["get"]
    return operation


def resolved(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every ``#/components/schemas/...`` reference replaced by its schema."""
    if isinstance(node, list):
        return [resolved(value, components) for value in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        target = components[ref.rsplit("/", 1)[1]]
        return resolved({**target, **{k: v for k, v in node.items() if k != "$ref"}}, components)
    return {key: resolved(value, components) for key, value in node.items()}


def test_openapi_documents_the_stream_as_fastapi_does() -> None:
    ours_app = app_with(mixed_router(EventSourceRoute), prefix="/api")
    theirs_app = app_with(mixed_router(None), prefix="/api")
    ours, theirs = (
        schema_operation(ours_app, "/api/items"),
        schema_operation(theirs_app, "/api/items"),
    )
    # Everything but the 200 response is FastAPI's own: parameters, ids, description, 422.
    assert {k: v for k, v in ours.items() if k != "responses"} == {
        k: v for k, v in theirs.items() if k != "responses"
    }
    assert ours["responses"]["422"] == theirs["responses"]["422"]
    assert ours["description"] == "Items of several kinds."
    content = ours["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]  # no "schema": the stream is its items
    item = content["text/event-stream"]["itemSchema"]
    components = theirs_app.openapi()["components"]["schemas"]
    expected = resolved(theirs["responses"]["200"]["content"]["text/event-stream"], components)
    assert resolved(item, {}) == expected["itemSchema"]
    assert item["required"] == ["data"]
    assert item["properties"]["data"]["contentSchema"]["properties"]["n"] == {
        "title": "N",
        "type": "integer",
    }


def test_openapi_without_an_item_type_and_with_own_responses() -> None:
    router = APIRouter(route_class=EventSourceRoute)
    documented = {"text/event-stream": {"itemSchema": {"type": "object"}}}

    @router.get("/loose", response_class=FastAPIEventSourceResponse)
    async def loose() -> AsyncIterable[ServerSentEvent]:
        yield ServerSentEvent(data=1)

    @router.get(
        "/own", response_class=FastAPIEventSourceResponse, responses={200: {"content": documented}}
    )
    async def own() -> AsyncIterable[Item]:
        yield Item(n=1)

    app = app_with(router)
    loose_content = schema_operation(app, "/loose")["responses"]["200"]["content"]
    assert loose_content == {"text/event-stream": {"itemSchema": item_schema()}}
    assert "required" not in loose_content["text/event-stream"]["itemSchema"]
    assert schema_operation(app, "/own")["responses"]["200"]["content"] == documented


def test_recursive_item_schema_keeps_its_definitions() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = []

    Node.model_rebuild()
    content = item_schema(Node)["properties"]["data"]["contentSchema"]
    assert content["$ref"] == "#/$defs/Node"
    assert content["$id"].startswith("urn:ssehub:item:")
    assert "Node" in content["$defs"]


# --------------------------------------------------------------------------- errors


class Opaque:
    """A class pydantic has no schema for."""


def test_an_item_type_pydantic_cannot_describe_is_refused_at_declaration() -> None:
    router = APIRouter(route_class=EventSourceRoute)

    async def opaque() -> AsyncIterable[Opaque]:
        yield Opaque()

    with pytest.raises(ConfigurationError, match="Opaque"):
        router.add_api_route("/opaque", opaque, response_class=FastAPIEventSourceResponse)


async def test_unresolvable_annotations_are_left_unresolved_as_fastapi_does() -> None:
    # A return annotation naming something only a type checker sees: FastAPI streams without an
    # item type (no validation, no data schema), and so does the route.
    router = APIRouter(route_class=EventSourceRoute)

    @router.get("/unresolved", response_class=FastAPIEventSourceResponse)
    async def unresolved() -> AsyncIterable[OnlyForTypeCheckers]:  # type: ignore[name-defined]  # noqa: F821
        yield {"free": "form"}

    app = app_with(router)
    assert await events_of(app, "/unresolved") == [("message", {"free": "form"}, "")]
    content = schema_operation(app, "/unresolved")["responses"]["200"]["content"]
    assert content == {"text/event-stream": {"itemSchema": item_schema()}}


def test_class_defaults_and_explicit_values() -> None:
    class Tuned(EventSourceResponse):
        DEFAULT_PING_INTERVAL = 5
        DEFAULT_SEND_TIMEOUT = 30
        DEFAULT_SHUTDOWN_GRACE_PERIOD = 2

    tuned = Tuned([])
    assert (tuned.ping_interval, tuned.send_timeout) == (5, 30)
    explicit = Tuned([], ping=0, send_timeout=None)
    assert (explicit.ping_interval, explicit.send_timeout) == (0, None)
    plain = EventSourceResponse([])
    assert (plain.ping_interval, plain.send_timeout) == (15, None)


def test_missing_fastapi_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import ssehub.fastapi\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.extra, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith("MissingDependency fastapi ")
    assert "pip install 'ssehub[fastapi]'" in result.stdout
