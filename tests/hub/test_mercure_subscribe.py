"""Mercure subscribe through the ASGI app: selectors, private routing, exact resume with
publisher-chosen and hub ids, the Last-Event-ID response header, errors, subscriptions API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from ssehub import ConfigurationError
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for, hub_of, running_hub
from .mercure_support import (
    HUB,
    SUBSCRIBER_KEY,
    mercure_settings,
    mercure_token,
    post_update,
    publisher,
    subscriber,
)

pytestmark = pytest.mark.anyio


def open_mercure(
    app: Starlette,
    topics: list[str],
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **params: str,
) -> Any:
    """``stream_asgi`` on a Mercure subscribe (``token``: a subscriber's, as a Bearer header)."""
    query = urlencode([("topic", t) for t in topics] + list(params.items()))
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return stream_asgi(app, scope=http_scope(HUB, query_string=query, headers=all_headers))


@asynccontextmanager
async def mercure_hub(**changes: Any) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A running Mercure hub (``mercure_settings(**changes)``) and a client for it."""
    async with running_hub(mercure_settings(**changes)) as app, client_for(app) as client:
        yield app, client


async def publish(client: httpx.AsyncClient, topic: str, data: str, **fields: str) -> str:
    response = await post_update(
        client, {"topic": topic, "data": data, **fields}, token=publisher()
    )
    assert response.status_code == 200, response.text
    return response.text


async def test_each_kind_of_selector_gets_its_topics_only() -> None:
    selectors = ["https://example.com/exact", "https://example.com/books/{id}"]
    async with (
        mercure_hub(mercure_anonymous=True) as (app, client),
        open_mercure(app, selectors) as chosen,
        open_mercure(app, ["*"]) as everything,
    ):
        await chosen.start()
        await everything.start()
        assert chosen.status_code == 200
        topics = [
            "https://example.com/exact",
            "https://example.com/books/1",
            "https://example.com/books/1/reviews",
            "https://example.com/other",
        ]
        for index, topic in enumerate(topics):
            await publish(client, topic, str(index))
        with anyio.fail_after(5):
            got = await chosen.events().take(2)
            assert [e.data for e in got] == ["0", "1"]
            every = await everything.events().take(4)
            assert [e.data for e in every] == ["0", "1", "2", "3"]
            await publish(client, "https://example.com/exact", "last")
            assert (await chosen.events().next_event()).data == "last"


async def test_private_updates_reach_matching_tokens_only() -> None:
    granted = subscriber(["https://example.com/users/{id}"])
    other = subscriber(["https://example.com/orders/{id}"])
    topic = "https://example.com/users/7"
    async with (
        mercure_hub(mercure_anonymous=True) as (app, client),
        open_mercure(app, ["*"], token=granted) as allowed,
        open_mercure(app, [topic], token=other) as refused,
        open_mercure(app, [topic]) as anonymous,
    ):
        for stream in (allowed, refused, anonymous):
            await stream.start()
        await publish(client, topic, "secret", private="on")
        await publish(client, topic, "public")
        with anyio.fail_after(5):
            assert [e.data for e in await allowed.events().take(2)] == [
                "secret",
                "public",
            ]
            assert (await refused.events().next_event()).data == "public"
            assert (await anonymous.events().next_event()).data == "public"


async def test_resume_after_a_publisher_chosen_id_is_exact() -> None:
    async with mercure_hub(mercure_anonymous=True) as (app, client):
        await publish(client, "t", "1", id="urn:uuid:one")
        await publish(client, "t", "2", id="urn:uuid:two")
        await publish(client, "u", "not selected")
        hub_id = await publish(client, "t", "3")
        for headers, params in (
            ({"Last-Event-ID": "urn:uuid:one"}, {}),
            ({}, {"lastEventID": "urn:uuid:one"}),
            ({"Last-Event-ID": "urn:uuid:one"}, {"lastEventID": "urn:uuid:two"}),
        ):
            async with open_mercure(app, ["t"], headers=headers, **params) as stream:
                await stream.start()
                assert stream.headers["last-event-id"] == "urn:uuid:one"
                with anyio.fail_after(5):
                    events = await stream.events().take(2)
                assert [(e.id, e.data) for e in events] == [
                    ("urn:uuid:two", "2"),
                    (hub_id, "3"),
                ]
        async with open_mercure(app, ["t"], headers={"Last-Event-ID": hub_id}) as stream:
            await stream.start()
            assert stream.headers["last-event-id"] == hub_id
            await publish(client, "t", "4", id="urn:uuid:four")
            with anyio.fail_after(5):
                event = await stream.events().next_event()
            assert (event.id, event.data) == ("urn:uuid:four", "4")


@pytest.mark.parametrize("requested", ["urn:uuid:unknown", "earliest", "x\r\nSet-Cookie: a=b", "é"])
async def test_an_id_that_cannot_be_resumed_answers_earliest(requested: str) -> None:
    async with (
        mercure_hub(mercure_anonymous=True) as (app, client),
        open_mercure(app, ["t"], lastEventID=requested) as s,
    ):
        await s.start()
        assert s.headers["last-event-id"] == "earliest"
        await publish(client, "t", "live")
        with anyio.fail_after(5):
            first = await s.events().next_event()
            if requested != "earliest":
                # ssehub's reset notice: a named event, so EventSource.onmessage ignores it
                assert first.event == "ssehub.reset"
                first = await s.events().next_event()
            assert first.data == "live"


async def test_no_last_event_id_header_without_a_request_for_one() -> None:
    async with (
        mercure_hub(mercure_anonymous=True) as (app, _),
        open_mercure(app, ["t"]) as stream,
    ):
        await stream.start()
        assert "last-event-id" not in stream.headers
        assert stream.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize(
    ("topics", "token", "params", "status"),
    [
        ([], None, {}, 400),
        (["/{a}{b}"], None, {}, 400),
        (["a b"], None, {}, 400),
        (["t"], "not-a-token", {}, 401),
        (["t"], None, {"lastEventID": "x" * 300}, 400),
        (
            [
                "/{a}/1",
                "/{a}/2",
                "/{a}/3",
                "/{a}/4",
                "/{a}/5",
                "/{a}/6",
                "/{a}/7",
                "/{a}/8",
                "/{a}/9",
            ],
            None,
            {},
            400,
        ),  # more patterns than the broker allows per subscription
    ],
)
async def test_subscribe_errors(
    topics: list[str], token: str | None, params: dict[str, str], status: int
) -> None:
    async with mercure_hub(mercure_anonymous=True) as (_, client):
        query: list[tuple[str, str | int | float | bool | None]] = [("topic", t) for t in topics]
        query += list(params.items())
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await client.get(HUB, params=query, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("text/plain")


async def test_anonymous_subscribers_need_the_switch() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        response = await client.get(HUB, params={"topic": "t"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        async with open_mercure(app, ["t"], token=subscriber(["t"])) as stream:
            await stream.start()
            assert stream.status_code == 200


async def test_cookie_and_query_tokens_subscribe() -> None:
    token = subscriber(["t"])
    async with running_hub(mercure_settings()) as app:
        cookie = {"Cookie": f"mercureAuthorization={token}"}
        async with open_mercure(app, ["t"], headers=cookie) as by_cookie:
            await by_cookie.start()
            assert by_cookie.status_code == 200
        async with open_mercure(app, ["t"], authorization=token) as by_query:
            await by_query.start()
            assert by_query.status_code == 200


async def test_connection_limits_and_status_visibility() -> None:
    settings = mercure_settings(mercure_anonymous=True, max_connections_per_address=1)
    async with (
        running_hub(settings) as app,
        client_for(app) as client,
        open_mercure(app, ["https://example.com/a"]) as stream,
    ):
        await stream.start()
        second = await client.get(HUB, params={"topic": "t"})
        assert second.status_code == 429
        status = (await client.get("/status")).json()
        assert "https://example.com/a" in json.dumps(status)
        assert hub_of(app).broker.subscriber_count("https://example.com/a") == 1
        stats = (await client.get("/dashboard/stats")).json()
        assert stats["topics"]["https://example.com/a"]["subscribers"] == 1


async def test_cors_preflight_for_mercure_origins() -> None:
    settings = mercure_settings(mercure_cors_origins=("https://app.example",))
    async with running_hub(settings) as app, client_for(app) as client:
        headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        response = await client.options(HUB, headers=headers)
        assert response.status_code == 204
        assert response.headers["access-control-allow-credentials"] == "true"
        origin = {"Origin": "https://app.example"}
        simple = await client.get(HUB, params={"topic": "t"}, headers=origin)
        exposed = simple.headers["access-control-expose-headers"]
        assert exposed == "Last-Event-ID, Link, Retry-After"
        denied = await client.options(HUB, headers={**headers, "Origin": "https://evil"})
        assert denied.status_code == 403


async def test_subscription_events_and_api() -> None:
    settings = mercure_settings(mercure_subscriptions=True)
    watcher = subscriber(["/.well-known/mercure/subscriptions{/topic}{/subscriber}"])
    async with (
        running_hub(settings) as app,
        client_for(app) as client,
        open_mercure(app, ["*"], token=watcher) as watching,
    ):
        await watching.start()
        selector = "https://example.com/books/{id}"
        reader = mercure_token(
            subscribe=["https://example.com/books/1"], key=SUBSCRIBER_KEY, payload={"u": 7}
        )
        async with open_mercure(app, [selector], token=reader) as reading:
            await reading.start()
            with anyio.fail_after(5):
                own = await watching.events().next_event()  # the watcher's own subscription
                event = await watching.events().next_event()
            document = json.loads(event.data)
            assert document["type"] == "Subscription"
            assert document["topic"] == selector
            assert document["active"] is True
            assert document["payload"] == {"u": 7}
            assert document["@context"] == "https://mercure.rocks/"
            assert document["id"].startswith(
                f"/.well-known/mercure/subscriptions/{quote(selector, safe='')}/urn%3Auuid%3A"
            )
            assert json.loads(own.data)["topic"] == "*"
            auth = {"Authorization": f"Bearer {watcher}"}
            listing = await client.get(HUB + "/subscriptions", headers=auth)
            assert listing.status_code == 200
            assert listing.headers["content-type"].startswith("application/ld+json")
            assert listing.headers["link"] == '</.well-known/mercure>; rel="mercure"'
            body = listing.json()
            assert body["type"] == "Subscriptions"
            assert len(body["subscriptions"]) == 2
            one = await client.get(document["id"], headers=auth)
            assert one.status_code == 200
            assert one.json()["subscriber"] == document["subscriber"]
            by_topic = await client.get(
                f"{HUB}/subscriptions/{quote(selector, safe='')}", headers=auth
            )
            assert [s["topic"] for s in by_topic.json()["subscriptions"]] == [selector]
            missing = await client.get(f"{HUB}/subscriptions/x/urn%3Anobody", headers=auth)
            assert missing.status_code == 404
            refused = await client.get(
                HUB + "/subscriptions", headers={"Authorization": f"Bearer {reader}"}
            )
            assert refused.status_code == 403
        with anyio.fail_after(5):
            ended = json.loads((await watching.events().next_event()).data)
        assert ended["active"] is False
        assert ended["topic"] == selector


async def test_a_stream_ends_at_its_token_expiry() -> None:
    token = mercure_token(subscribe=["t"], key=SUBSCRIBER_KEY, lifetime=1)
    async with mercure_hub() as (app, _), open_mercure(app, ["t"], token=token) as stream:
        await stream.start()
        assert stream.status_code == 200
        with anyio.fail_after(5):
            await stream.read_all()  # the hub ends the body at exp (within a second)


async def test_head_answers_as_get_does_with_too_many_patterns() -> None:
    async with mercure_hub(mercure_anonymous=True) as (_, client):
        query = [("topic", f"/{{a}}/{n}") for n in range(9)]
        response = await client.head(HUB, params=query)
        assert response.status_code == 400  # as GET (test_subscribe_errors), RFC 9110 §9.3.2


async def test_resuming_is_no_oracle_for_updates_the_subscriber_may_not_know() -> None:
    # A guessed chosen id resumes (and is echoed) only when it names an update the subscriber
    # could have received: a private one it may not read, or one on a topic it did not
    # select, is answered as an unknown id.
    async with mercure_hub(mercure_anonymous=True) as (app, client):
        await publish(client, "https://e.com/users/1/secret", "x", private="on", id="inv-42")
        await publish(client, "https://e.com/other", "y", id="other-7")
        await publish(client, "https://e.com/public", "z", id="pub-1")
        reader = subscriber(["https://e.com/users/{id}/secret"])
        for guess, token, answered in (
            ("inv-41", None, "earliest"),
            ("inv-42", None, "earliest"),  # private, anonymous: as unknown as inv-41
            ("other-7", None, "earliest"),  # public, but not a selected topic
            ("pub-1", None, "pub-1"),
            ("inv-42", reader, "inv-42"),  # its reader may resume after it
        ):
            topics = ["https://e.com/public", "https://e.com/users/1/secret"]
            async with open_mercure(
                app, topics, token=token, headers={"Last-Event-ID": guess}
            ) as s:
                await s.start()
                assert s.headers["last-event-id"] == answered, guess


async def test_with_ssehub_auth_mercure_governs_only_its_topics() -> None:
    # A Mercure token is no ssehub grant: with --auth, Mercure's subscribers see and its
    # publishers write only the --mercure-topics (a review found payroll/* readable).
    with pytest.raises(ConfigurationError, match="--mercure-topics"):
        mercure_settings(auth="jwt", jwt_key="s" * 40)
    settings = mercure_settings(
        auth="jwt", jwt_key="s" * 40, mercure_anonymous=True, mercure_topics=("https://e.com/*",)
    )
    async with running_hub(settings) as app, client_for(app) as client:
        fields = {"topic": "payroll/alice", "data": "x"}
        refused = await post_update(client, fields, token=publisher())
        assert refused.status_code == 403
        assert "not Mercure's" in refused.text
        outside = await client.get(HUB, params={"topic": "payroll/alice"})
        assert outside.status_code == 403
        before = await publish(client, "https://e.com/first", "first")
        async with open_mercure(app, ["*"]) as stream:
            await stream.start()
            await hub_of(app).broker.publish("payroll/alice", "salary")  # ssehub's own topic
            await publish(client, "https://e.com/news", "hello")
            with anyio.fail_after(5):
                event = await stream.events().next_event()
            assert event.data == "hello"
        # A resume's replay is filtered alike.
        async with open_mercure(app, ["*"], lastEventID=before) as stream:
            await stream.start()
            await publish(client, "https://e.com/last", "last")
            with anyio.fail_after(5):
                events = await stream.events().take(2)
            assert [e.data for e in events] == ["hello", "last"]
