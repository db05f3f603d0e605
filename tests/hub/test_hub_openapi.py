"""The OpenAPI document matches the app's routes, and /docs is self-contained."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from ssehub.broker import Broker
from ssehub.hub import ERROR_CODES, HubSettings, create_app, openapi_document
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for

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
