"""The OpenAPI document is the truth: it matches the app's routes, its schemas are the types the
hub validates with, its limits are the settings', every code a route answers is listed for
that route (and provoked here), and /docs is self-contained. (schemathesis runs against it in
test_openapi_schemathesis.py.)"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema_rs
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from ssehub import wire
from ssehub.broker import Broker
from ssehub.broker.topics import TOPIC_PATTERN
from ssehub.hub import ERROR_CODES, HubSettings, create_app, openapi_document, parse_publish_body
from ssehub.hub._errors import HubHTTPError
from ssehub.hub._responses import CODE_MEANINGS, operation_codes
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for, running_hub

SRC = Path(__file__).resolve().parents[2] / "src" / "ssehub"
SECRET = "s" * 40

pytestmark = pytest.mark.anyio


def app_operations(app: Starlette) -> set[tuple[str, str]]:
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route)
        assert route.methods is not None
        # Starlette adds HEAD to every GET route; it is implied by GET in OpenAPI terms.
        operations |= {(route.path, m.lower()) for m in route.methods if m != "HEAD"}
    return operations


def document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def error_enum(response: dict[str, Any]) -> list[str]:
    """The codes an error response lists (none for a response that is not an Error)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    for part in [schema, *schema.get("anyOf", [])]:
        for piece in part.get("allOf", []):
            if "properties" in piece:
                return list(piece["properties"]["error"]["enum"])
    return []


def documented(document: dict[str, Any], path: str, method: str) -> dict[int, set[str]]:
    """The error codes an operation documents, by status."""
    responses = document["paths"][path][method]["responses"]
    return {int(status): set(error_enum(response)) for status, response in responses.items()}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


@pytest.mark.parametrize("docs", [True, False])
async def test_every_route_is_described_and_vice_versa(docs: bool) -> None:
    settings = HubSettings(docs=docs)
    app = create_app(settings)
    document = openapi_document(settings)
    assert app_operations(app) == document_operations(document)
    assert (("/docs", "get") in app_operations(app)) is docs


async def test_document_is_consistent(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/"}]
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas
    assert set(schemas["Error"]["properties"]["error"]["enum"]) == set(ERROR_CODES)
    for item in document["paths"].values():
        for operation in item.values():
            assert operation["summary"]
            assert "200" in operation["responses"]
            for status, response in operation["responses"].items():
                # Each error response lists its codes, and each code has that status.
                for code in error_enum(response):
                    assert ERROR_CODES[code] == int(status), (code, status)
    reset_header = document["paths"]["/events"]["get"]["responses"]["200"]["headers"]
    assert "SSEHub-Reset" in reset_header


async def test_docs_page_is_self_contained(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # No CDN, no external resource of any kind: hubs often run without internet access.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "https://" not in page
    assert "http://" not in page
    assert 'fetch("openapi.json")' in page  # relative: works under a mount prefix
    assert "default-src 'none'" in response.headers["content-security-policy"]


@asynccontextmanager
async def mounted() -> AsyncIterator[tuple[Starlette, Broker]]:
    async with Broker() as broker:
        hub = create_app(broker=broker)
        yield Starlette(routes=[Mount("/sse", app=hub)]), broker


async def test_mounted_under_a_prefix() -> None:
    async with mounted() as (outer, broker), client_for(outer) as client:
        response = await client.get("/sse/openapi.json")
        assert response.json()["servers"] == [{"url": "/sse"}]
        assert (await client.get("/sse/health")).json() == {"status": "ok"}
        with anyio.fail_after(5):
            scope = http_scope("/sse/events", query_string="topic=t")
            async with stream_asgi(outer, scope=scope) as stream:
                await stream.start()
                assert stream.status_code == 200
                response = await client.post("/sse/publish", json={"topic": "t", "data": "m"})
                assert response.status_code == 200
                event = await stream.events().next_event()
                assert (event.id, event.data) == (response.json()["id"], "m")
        assert broker.statistics().subscribers == 0


# -- the document is the truth ---------------------------------------------------------------


def test_limits_come_from_the_settings() -> None:
    settings = HubSettings(
        max_topic_length=100,
        max_topics=5,
        max_batch=7,
        max_last_event_id_length=99,
        max_body_size=12_345,
    )
    document = openapi_document(settings)
    schemas = document["components"]["schemas"]
    event = schemas["PublishEvent"]["properties"]
    topic = event["topic"]
    assert (topic["minLength"], topic["maxLength"]) == (1, 100)
    # The broker's own pattern, anchored; ECMA-262's `$` ends the string (Python's `\Z`).
    assert topic["pattern"] == f"^(?:{TOPIC_PATTERN.pattern})$"
    assert event["topics"]["maxItems"] == 5
    assert event["topics"]["items"] == topic
    retry = event["retry"]["anyOf"][0]
    assert (retry["type"], retry["minimum"], retry["maximum"]) == ("integer", 0, wire.MAX_RETRY)
    publish = document["paths"]["/publish"]["post"]
    body = publish["requestBody"]["content"]["application/json"]["schema"]
    batch = next(part for part in body["anyOf"] if part.get("type") == "array")
    assert (batch["minItems"], batch["maxItems"]) == (1, 7)
    assert "12345 bytes" in publish["description"]
    events = document["paths"]["/events"]["get"]
    parameters = {p["name"]: p["schema"] for p in events["parameters"]}
    assert parameters["topic"]["items"] == topic
    assert parameters["topic"]["maxItems"] == 5
    assert parameters["Last-Event-ID"]["maxLength"] == 99
    assert parameters["lastEventId"]["maxLength"] == 99


def test_an_event_needs_exactly_one_of_topic_and_topics() -> None:
    rules = openapi_document(HubSettings())["components"]["schemas"]["PublishEvent"]
    assert rules["oneOf"] == [{"required": ["topic"]}, {"required": ["topics"]}]
    assert rules["required"] == ["data"]
    assert rules["additionalProperties"] is False


def test_the_event_stream_is_typed() -> None:
    document = openapi_document(HubSettings())
    stream = document["components"]["schemas"]["StreamEvent"]
    assert set(stream["properties"]) == {"data", "event", "id", "retry"}
    assert stream["required"] == ["data"]
    assert stream["properties"]["data"]["type"] == "string"
    for path in ("/events", "/channels/{channel}/listeners/{listener}/events"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert content == {
            "text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}
        }


def body_validator(settings: HubSettings) -> Any:
    document = openapi_document(settings)
    body = document["paths"]["/publish"]["post"]["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


AGREEMENT = [
    {"topic": "t", "data": None},
    {"topics": ["a", "b/1", "a"], "data": [1, {"x": "y"}], "event": "e", "retry": 0},
    {"topic": "t", "data": "x", "event": None, "retry": None, "private": False},
    {"topic": "t", "data": 1, "retry": 3000.0},
    {"topic": "t", "data": 1, "retry": wire.MAX_RETRY},
    [{"topic": "t", "data": 1}] * 4,
    {"data": None},
    [{"data": None}],
    {"topic": "t"},
    {"topic": "t", "topics": ["t"], "data": 1},
    {"topics": [], "data": 1},
    {"topics": ["a"] * 5, "data": 1},
    {"topic": "", "data": 1},
    {"topic": "a b", "data": 1},
    {"topic": "t\n", "data": 1},
    {"topic": "x" * 101, "data": 1},
    {"topic": 5, "data": 1},
    {"topic": None, "data": 1},
    {"topic": "t", "data": 1, "event": ""},
    {"topic": "t", "data": 1, "event": "a\nb"},
    {"topic": "t", "data": 1, "event": "ok\n"},
    {"topic": "t", "data": 1, "event": "a\u0000b"},
    {"topic": "t", "data": 1, "event": "e" * 257},
    {"topic": "t", "data": 1, "event": "ssehub.reset"},
    {"topic": "t", "data": 1, "retry": -1},
    {"topic": "t", "data": 1, "retry": 1.5},
    {"topic": "t", "data": 1, "retry": True},
    {"topic": "t", "data": 1, "retry": "100"},
    {"topic": "t", "data": 1, "retry": wire.MAX_RETRY + 1},
    {"topic": "t", "data": 1, "id": "7"},
    {"topic": "t", "data": 1, "private": True},  # a hub without authentication
    {"topic": "t", "data": 1, "private": "yes"},
    [],
    [{"topic": "t", "data": 1}] * 5,
    [1],
    "text",
    3,
    None,
]


@pytest.mark.parametrize("value", AGREEMENT, ids=lambda value: json.dumps(value)[:60])
def test_the_schema_and_the_parser_agree(value: Any) -> None:
    settings = HubSettings(max_topic_length=100, max_topics=4, max_batch=4)
    try:
        parse_publish_body(
            json.dumps(value).encode(),
            max_topics=4,
            max_batch=4,
            max_topic_length=100,
            private=False,
        )
    except HubHTTPError:
        accepted = False
    else:
        accepted = True
    assert body_validator(settings).is_valid(value) is accepted


def test_with_authentication_a_private_event_is_valid() -> None:
    value = {"topic": "t", "data": 1, "private": True}
    assert body_validator(HubSettings(auth="jwt", jwt_key=SECRET)).is_valid(value)
    requests, _ = parse_publish_body(
        json.dumps(value).encode(), max_topics=4, max_batch=4, private=True
    )
    assert requests[0].private is True


def test_max_retry_is_one_value() -> None:
    from ssehub.hub import _publish

    assert _publish.MAX_RETRY is wire.MAX_RETRY == 2**64 - 1


# -- every code a route answers is documented for it ------------------------------------------

ROUTE_MODULES = [
    *(SRC / "hub").glob("_*.py"),
    SRC / "channels" / "_message.py",
]
NOT_AN_OPERATION = {
    # A CORS preflight (OPTIONS) and a method a path does not have: no operation of the
    # document answers them; the router does, for every path.
    "origin_not_allowed",
    "method_not_allowed",
}
SETTINGS_VARIANTS = [
    HubSettings(),
    HubSettings(auth="jwt", jwt_key=SECRET),
    HubSettings(auth="jwt", jwt_key=SECRET, anonymous_subscribe=True, auth_cookie=""),
]


def raised_codes() -> set[str]:
    """Every error code written as a string in the modules that answer HTTP requests."""
    codes = set()
    for path in ROUTE_MODULES:
        if path.name in {"_errors.py", "_responses.py", "_openapi.py", "_auth_openapi.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ERROR_CODES:
                codes.add(node.value)
    return codes


def test_every_code_a_route_module_raises_is_documented() -> None:
    codes = raised_codes()
    assert {"reserved_event", "unsupported_media_type", "invalid_token"} <= codes
    documented_codes = {
        code
        for settings in SETTINGS_VARIANTS
        for operation in operation_codes(settings).values()
        for code in operation
    }
    assert codes - NOT_AN_OPERATION <= documented_codes
    assert set(ERROR_CODES) - NOT_AN_OPERATION <= documented_codes
    assert set(CODE_MEANINGS) == set(ERROR_CODES)


@pytest.mark.parametrize("settings", SETTINGS_VARIANTS, ids=["open", "jwt", "jwt-anonymous"])
def test_every_operation_documents_its_codes(settings: HubSettings) -> None:
    document = openapi_document(settings)
    codes = operation_codes(settings)
    for path, item in document["paths"].items():
        for method in item:
            listed = set().union(*documented(document, path, method).values())
            assert listed == set(codes[path, method]), (path, method)


def bearer(publish: list[str], subscribe: list[str]) -> dict[str, str]:
    claims = {
        "exp": int(time.time()) + 3600,
        "ssehub": {"publish": publish, "subscribe": subscribe},
    }
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
BROADCAST = "/channels/{channel}/broadcast"
LISTENERS = "/channels/{channel}/listeners"
EVENT = {"topic": "t", "data": 1}


def provoke(
    template: str,
    method: str,
    status: int,
    code: str,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[str, str, str, dict[str, str], Any, int, str]:
    """A request to a concrete path of an operation, and the error it must answer."""
    return (template, method, path or template, headers or {}, body, status, code)


PROVOKED = [
    provoke("/events", "get", 400, "missing_topic"),
    provoke("/events", "get", 400, "invalid_topic", path="/events?topic=a%20b"),
    provoke("/events", "get", 400, "too_many_topics", path="/events?" + "&topic=a" * 33),
    provoke(
        "/events",
        "get",
        400,
        "last_event_id_too_long",
        path="/events?topic=a&lastEventId=" + "1" * 300,
        headers={"last-event-id": "1"},  # the query is bounded even where the header wins
    ),
    provoke("/publish", "post", 415, "unsupported_media_type", headers=TEXT, body=b"{}"),
    provoke("/publish", "post", 413, "body_too_large", headers=JSON, body=b"x" * 1_048_577),
    provoke("/publish", "post", 413, "too_many_events", headers=JSON, body=[EVENT] * 1001),
    provoke("/publish", "post", 400, "invalid_json", headers=JSON, body=b"{"),
    provoke("/publish", "post", 400, "empty_batch", headers=JSON, body=[]),
    provoke("/publish", "post", 400, "missing_topic", headers=JSON, body=[{"data": None}]),
    provoke("/publish", "post", 400, "missing_data", headers=JSON, body={"topic": "t"}),
    provoke("/publish", "post", 400, "unknown_field", headers=JSON, body={**EVENT, "x": 1}),
    provoke(
        "/publish", "post", 403, "reserved_event", headers=JSON, body={**EVENT, "event": "ssehub.x"}
    ),
    provoke(
        "/publish",
        "post",
        400,
        "private_without_auth",
        headers=JSON,
        body={**EVENT, "private": True},
    ),
    provoke("/channels", "post", 415, "unsupported_media_type", headers=TEXT, body=b"{}"),
    provoke("/channels", "post", 400, "invalid_name", headers=JSON, body={"name": "a b"}),
    provoke("/channels", "post", 409, "already_exists", headers=JSON, body={"name": "c"}),
    provoke("/channels", "post", 400, "invalid_body", headers=JSON, body=[]),
    provoke("/channels/{channel}", "delete", 404, "unknown_channel", path="/channels/nope"),
    provoke(LISTENERS, "post", 404, "unknown_channel", path="/channels/nope/listeners"),
    provoke(
        LISTENERS,
        "post",
        415,
        "unsupported_media_type",
        path="/channels/c/listeners",
        headers=TEXT,
        body=b"{}",
    ),
    provoke(
        LISTENERS,
        "post",
        409,
        "already_exists",
        path="/channels/c/listeners",
        headers=JSON,
        body={"id": "l"},
    ),
    provoke(
        LISTENERS + "/{listener}/events",
        "get",
        404,
        "unknown_listener",
        path="/channels/c/listeners/nope/events",
    ),
    provoke(
        BROADCAST,
        "post",
        415,
        "unsupported_media_type",
        path="/channels/c/broadcast",
        headers=TEXT,
        body=b"{}",
    ),
    provoke(
        BROADCAST,
        "post",
        400,
        "invalid_event",
        path="/channels/c/broadcast",
        headers=JSON,
        body={"type": 5},
    ),
    provoke(
        BROADCAST,
        "post",
        403,
        "reserved_event",
        path="/channels/c/broadcast",
        headers=JSON,
        body={"type": "ssehub.reset"},
    ),
    provoke(
        BROADCAST,
        "post",
        400,
        "unknown_field",
        path="/channels/c/broadcast",
        headers=JSON,
        body={"x": 1},
    ),
    provoke(
        LISTENERS + "/{listener}/messages",
        "post",
        404,
        "unknown_listener",
        path="/channels/c/listeners/nope/messages",
        headers=JSON,
        body={"type": "note"},
    ),
]


async def send(http: httpx.AsyncClient, path: str, method: str, headers: Any, body: Any) -> Any:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return await http.request(method.upper(), path, headers=headers, content=content)


def assert_documented(
    document: dict[str, Any], template: str, method: str, response: httpx.Response
) -> str:
    code = response.json()["error"]
    assert code in documented(document, template, method).get(response.status_code, set()), (
        template,
        method,
        response.status_code,
        code,
    )
    return str(code)


async def test_each_provoked_code_is_documented_for_its_route() -> None:
    settings = HubSettings()
    document = openapi_document(settings)
    async with running_hub(settings) as app, client_for(app) as http:
        assert (await http.post("/channels", json={"name": "c"})).status_code == 200
        assert (await http.post("/channels/c/listeners", json={"id": "l"})).status_code == 200
        for template, method, path, headers, body, status, code in PROVOKED:
            response = await send(http, path, method, headers, body)
            assert (response.status_code, response.json()["error"]) == (status, code), path
            assert_documented(document, template, method, response)


async def test_security_codes_are_documented_for_their_routes() -> None:
    settings = HubSettings(auth="jwt", jwt_key=SECRET, publish_rate=1, publish_burst=1)
    document = openapi_document(settings)
    event = {"topic": "t", "data": 1}
    seen = set()
    async with running_hub(settings) as app, client_for(app) as http:
        cases: list[tuple[str, str, str, dict[str, str], Any]] = [  # -> any documented code
            ("/publish", "post", "/publish", JSON, event),
            ("/publish", "post", "/publish", {**JSON, "Authorization": "Bearer x"}, event),
            ("/publish", "post", "/publish", {**JSON, **bearer(["other"], [])}, event),
            ("/publish", "post", "/publish", {**JSON, **bearer(["*"], [])}, [event, event]),
            ("/publish", "post", "/publish", {**JSON, "cookie": "ssehub_token=x"}, event),
            ("/health", "get", "/health", {"Authorization": "Bearer x"}, None),
            ("/status", "get", "/status", {}, None),
            ("/events", "get", "/events?topic=t", {}, None),
            ("/events", "get", "/events?topic=t", bearer([], ["other"]), None),
            ("/channels", "get", "/channels", {}, None),
            ("/channels", "post", "/channels", {**JSON, **bearer(["x"], [])}, {"name": "c"}),
        ]
        for template, method, path, headers, body in cases:
            response = await send(http, path, method, headers, body)
            seen.add(assert_documented(document, template, method, response))
    assert {"unauthorized", "invalid_token", "forbidden", "rate_limited"} <= seen


async def test_unavailable_is_documented_where_the_broker_is_needed() -> None:
    settings = HubSettings()
    document = openapi_document(settings)
    app = create_app(settings)  # no lifespan: neither the broker nor the channels run
    async with client_for(app) as http:
        for path, method, body in [
            ("/publish", "post", {"topic": "t", "data": 1}),
            ("/status", "get", None),
            ("/events?topic=t", "get", None),
            ("/channels", "get", None),
            ("/dashboard/stats", "get", None),
        ]:
            response = await send(http, path, method, JSON, body)
            assert response.status_code == 503
            assert assert_documented(document, path.split("?")[0], method, response) == (
                "unavailable"
            )


async def test_allow_lists_every_documented_method(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        if "{" in path:
            continue
        response = await client.request("PUT", path)
        assert response.status_code == 405
        allowed = {m.strip().lower() for m in response.headers["allow"].split(",")}
        assert allowed - {"head"} == set(item), path
