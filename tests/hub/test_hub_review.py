"""Found in a review of the hub's HTTP surface (7 Dec), each pinned by a test that failed before
its fix: hostile input answers 4xx, never 500, and HEAD answers as GET would."""

from __future__ import annotations

import json
import string
import uuid
from typing import Any
from urllib.parse import quote

import anyio
import jwt
import pytest
from starlette.applications import Starlette

from security.support import SECRET, bearer, jwt_settings
from ssehub.hub import HubSettings, create_app
from ssehub.hub._mercure_selectors import _matcher
from ssehub.hub._uri_template import compile_template
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for, hub_of, open_events, running_hub
from .mercure_support import HUB, SUBSCRIBER_KEY, mercure_settings

pytestmark = pytest.mark.anyio


async def test_a_deeply_nested_body_with_a_lone_surrogate_is_a_400_not_a_500() -> None:
    # json.loads accepts the nesting; a recursive walk looking for the surrogate did not.
    data = "[" * 400 + '"\\ud800"' + "]" * 400
    body = ('{"topic":"a","data":' + data + "}").encode()
    async with running_hub() as app, client_for(app) as http:
        response = await http.post(
            "/publish", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_data"


async def test_a_publish_without_a_token_is_refused_before_its_body_is_read() -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        for body in (b"not json", b'{"topic": "t", "data": 1}'):
            response = await http.post(
                "/publish", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "unauthorized"


def _token_with_exp(exp: Any, claim: str) -> str:
    # json.dumps writes 10**400 as a JSON integer, and float("inf") as Infinity (which
    # Python's json, and so PyJWT, reads back).
    payload = {"exp": exp, claim: {"subscribe": ["*"], "publish": ["*"]}}
    return jwt.encode(payload, SECRET if claim == "ssehub" else SUBSCRIBER_KEY, algorithm="HS256")


@pytest.mark.parametrize("exp", [10**400, float("inf")], ids=["10**400", "Infinity"])
async def test_a_signed_token_with_an_exp_beyond_any_time_is_a_401(exp: Any) -> None:
    token = _token_with_exp(exp, "ssehub")
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        event = {"topic": "t", "data": 1}
        response = await http.post("/publish", json=event, headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
        async with open_events(app, "topic=t", headers=bearer(token)) as stream:
            await stream.start()
            assert stream.status_code == 401
            assert json.loads(await stream.read_all())["error"] == "invalid_token"


@pytest.mark.parametrize("exp", [10**400, float("inf")], ids=["10**400", "Infinity"])
async def test_a_mercure_token_with_an_exp_beyond_any_time_is_a_401(exp: Any) -> None:
    token = _token_with_exp(exp, "mercure")
    async with running_hub(mercure_settings()) as app:
        scope = http_scope(HUB, query_string="topic=t", headers=bearer(token))
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == 401


async def _status_of(app: Starlette, path: str, query: str, method: str) -> int:
    return await _status_of_scope(app, http_scope(path, method=method, query_string=query))


@pytest.mark.parametrize(("path", "query"), [("/events", "topic=t"), (HUB, "topic=t")])
async def test_head_answers_a_full_hub_as_get_does(path: str, query: str) -> None:
    settings = mercure_settings(mercure_anonymous=True, max_connections=1)
    async with running_hub(settings) as app:
        assert await _status_of(app, path, query, "HEAD") == 200
        async with stream_asgi(app, scope=http_scope(path, query_string=query)) as held:
            await held.start()
            assert held.status_code == 200
            assert await _status_of(app, path, query, "GET") == 429
            assert await _status_of(app, path, query, "HEAD") == 429
        # HEAD held no place: the limit is free again for a GET.
        assert hub_of(app).guard.connections.open == 0


@pytest.mark.parametrize(("path", "query"), [("/events", "topic=t"), (HUB, "topic=t")])
async def test_head_answers_a_stopped_broker_as_get_does(path: str, query: str) -> None:
    app = create_app(mercure_settings(mercure_anonymous=True))  # no lifespan: no broker running
    assert await _status_of(app, path, query, "GET") == 503
    assert await _status_of(app, path, query, "HEAD") == 503


def _wide_template(index: int, variables: int) -> str:
    # A new one each call: a template compiled by an earlier test would hide a compilation.
    names = list(string.ascii_letters)[:variables]
    return f"/{uuid.uuid4().hex}/{index}" + "{?" + ",".join(names) + "}"


async def test_mercure_refuses_before_compiling_any_template() -> None:
    # Not a token: 401 without compiling a template. Too many patterns: 400, likewise.
    async with running_hub(mercure_settings()) as app:
        query = "&".join("topic=" + quote(_wide_template(i, 16), safe="") for i in range(32))
        before = _compiled()
        assert await _status_of(app, HUB, query, "GET") == 401
        assert _compiled() == before
    async with running_hub(mercure_settings(mercure_anonymous=True)) as app:
        scope = http_scope(HUB, query_string=query)
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code == 400
            assert b"too many patterns" in await stream.read_all()
        assert _compiled() == before


def _compiled() -> tuple[int, int]:
    # Misses of the two template caches: each is a template compiled.
    return _matcher.cache_info().misses, compile_template.cache_info().misses


async def test_a_template_with_too_many_variables_is_refused() -> None:
    async with running_hub(mercure_settings(mercure_anonymous=True)) as app:
        query = "topic=" + quote(_wide_template(0, 17), safe="")
        async with stream_asgi(app, scope=http_scope(HUB, query_string=query)) as stream:
            await stream.start()
            assert stream.status_code == 400
            assert b"more than 16 variables" in await stream.read_all()
        query = "topic=" + quote(_wide_template(0, 16), safe="")
        assert await _status_of(app, HUB, query, "HEAD") == 200


async def test_the_openapi_document_does_not_promise_a_key_clients_could_name() -> None:
    async with running_hub() as app, client_for(app) as http:
        text = json.dumps((await http.get("/openapi.json")).json())
        assert "<key>:<i>" not in text
        assert "never equal to a key a client can name" in text


async def test_head_of_a_listener_stream_answers_the_connection_limit_as_get_does() -> None:
    async with running_hub(HubSettings(max_connections_per_address=1)) as app:
        async with client_for(app) as http:
            assert (await http.post("/channels", json={"name": "jobs"})).is_success
            ids = [(await http.post("/channels/jobs/listeners")).json()["id"] for _ in range(2)]
        paths = [f"/channels/jobs/listeners/{listener}/events" for listener in ids]
        assert await _status_of(app, paths[1], "", "HEAD") == 200
        with anyio.fail_after(5):
            async with stream_asgi(app, paths[0]) as held:
                await held.start()
                assert held.status_code == 200
                assert await _status_of(app, paths[1], "", "GET") == 429
                assert await _status_of(app, paths[1], "", "HEAD") == 429
        assert hub_of(app).guard.connections.open == 0


async def test_mercure_compiles_no_template_for_a_request_refused_later() -> None:
    settings = mercure_settings(mercure_anonymous=True, max_connections=1)
    templates = "&".join("topic=" + quote(_wide_template(i, 8), safe="") for i in range(4))
    async with running_hub(settings) as app:
        before = _compiled()
        scope = http_scope(HUB, query_string=templates, headers={"last-event-id": "x" * 5000})
        assert await _status_of_scope(app, scope) == 400  # Last-Event-ID too long
        async with stream_asgi(app, scope=http_scope(HUB, query_string="topic=t")) as held:
            await held.start()
            assert await _status_of(app, HUB, templates, "GET") == 429
        assert _compiled() == before


async def _status_of_scope(app: Starlette, scope: dict[str, Any]) -> int:
    with anyio.fail_after(5):
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            return stream.status_code


async def test_mercure_subscription_events_do_not_push_other_topics_out_of_history() -> None:
    # Each subscription announces itself on a topic of its own: kept in history, a client
    # opening and closing subscriptions emptied the history of every real topic.
    settings = mercure_settings(
        mercure_anonymous=True, mercure_subscriptions=True, history_topics=4
    )
    async with running_hub(settings) as app:
        broker = hub_of(app).broker
        first = await broker.publish("https://example.com/news", "important")
        await broker.publish("https://example.com/news", "also important")
        query = "&".join(f"topic=https://x.example/{i}" for i in range(8))
        for _ in range(5):  # 80 subscription events, on 40 topics
            async with stream_asgi(app, scope=http_scope(HUB, query_string=query)) as stream:
                await stream.start()
                assert stream.status_code == 200
                await stream.disconnect()
        replay = await broker.backend.replay(["https://example.com/news"], first.id)
        assert replay.reset is None
        assert [event.event.data for event in replay.events] == ["also important"]


async def test_status_and_dashboard_do_not_list_mercure_subscription_event_topics() -> None:
    # Their names hold a subscriber's selector and id, which the subscriptions API guards.
    private = "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Finbox/urn:uuid:1"
    async with running_hub(mercure_settings(mercure_subscriptions=True)) as app:
        broker = hub_of(app).broker
        async with broker.subscribe(private), broker.subscribe("news"), client_for(app) as http:
            status = (await http.get("/status")).json()
            stats = (await http.get("/dashboard/stats")).json()
        for document in (status, stats):
            assert list(document["topics"]) == ["news"]
            assert "hidden_topics" not in document
