"""Confidential status: ``/status`` and ``/dashboard/stats`` list only the caller's topics.

A topic is listed to a credential whose ``subscribe`` grant covers it; ``*`` (a JWT granting
``"subscribe": ["*"]``, an API key without patterns) sees every topic; the others are only
counted (``hidden_topics``). ``/metrics`` names no topic at all. With auth off nothing is hidden.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from starlette.applications import Starlette

from ssehub.hub import HubSettings
from ssehub.testing import stream_asgi

from .conftest import client_for, running_hub

pytestmark = pytest.mark.anyio

SECRET = "s" * 40


def token(publish: list[str] | None = None, subscribe: list[str] | None = None) -> str:
    grants = {"publish": publish or [], "subscribe": subscribe or []}
    claims = {"sub": "tester", "exp": int(time.time()) + 3600, "ssehub": grants}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def jwt_settings(**changes: Any) -> HubSettings:
    return HubSettings(auth="jwt", jwt_key=SECRET, **changes)


ADMIN = bearer(token(["*"], ["*"]))
ORDERS = bearer(token(subscribe=["orders/*"]))
PUBLISH_ONLY = bearer(token(["orders/*"]))  # a scraper's or publisher's token: no subscribe
SECRET_TOPICS = ("users/alice/inbox", "users/bob/inbox")


async def _publish(http: httpx.AsyncClient, topic: str, *, private: bool = False) -> None:
    body = {"topic": topic, "data": "x", "private": private}
    response = await http.post("/publish", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text


async def _fill(http: httpx.AsyncClient) -> None:
    """orders/1 and news (public), two inboxes holding only private events."""
    await _publish(http, "orders/1")
    await _publish(http, "news")
    for topic in SECRET_TOPICS:
        await _publish(http, topic, private=True)


async def _json(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Any:
    response = await http.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


@pytest.mark.parametrize("path", ["/status", "/dashboard/stats"])
async def test_a_token_sees_only_the_topics_it_may_subscribe_to(path: str) -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        await _fill(http)
        document = await _json(http, path, ORDERS)
        assert set(document["topics"]) == {"orders/1"}
        assert document["hidden_topics"] == 3
        assert all(secret not in str(document) for secret in SECRET_TOPICS)
        if path == "/dashboard/stats":
            assert document["topic_count"] == 1  # the visible ones: the page says "1 topic"
        # A token without any subscribe grant (a publisher, a monitoring job) sees counts only.
        blind = await _json(http, path, PUBLISH_ONLY)
        assert (blind["topics"], blind["hidden_topics"]) == ({}, 4)
        # Process-wide aggregates stay: they name no topic.
        assert blind["totals"]["published"] == document["totals"]["published"] == 4


@pytest.mark.parametrize("path", ["/status", "/dashboard/stats"])
async def test_an_admin_sees_every_topic(path: str) -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        await _fill(http)
        document = await _json(http, path, ADMIN)
        assert set(document["topics"]) == {"orders/1", "news", *SECRET_TOPICS}
        assert "hidden_topics" not in document  # nothing was filtered


async def test_api_keys_without_patterns_are_admins(tmp_path: Path) -> None:
    admin_key, orders_key = "A" * 32, "B" * 32
    keys = tmp_path / "keys"
    keys.write_text(f"{admin_key}\n{orders_key} orders/*\n")
    settings = HubSettings(auth="api_key", api_keys_file=str(keys))
    async with running_hub(settings) as app, client_for(app) as http:
        for topic in ("orders/1", *SECRET_TOPICS):
            body = {"topic": topic, "data": "x", "private": topic != "orders/1"}
            assert (await http.post("/publish", json=body, headers=bearer(admin_key))).is_success
        everything = await _json(http, "/status", bearer(admin_key))
        assert set(everything["topics"]) == {"orders/1", *SECRET_TOPICS}
        limited = await _json(http, "/status", bearer(orders_key))
        assert (set(limited["topics"]), limited["hidden_topics"]) == ({"orders/1"}, 2)


async def test_anonymous_subscribe_does_not_widen_the_list() -> None:
    # With --anonymous-subscribe a token may open any topic for its public events; that is not
    # a grant, and a topic holding only private events must not be revealed by its name.
    async with running_hub(jwt_settings(anonymous_subscribe=True)) as app, client_for(app) as http:
        await _fill(http)
        document = await _json(http, "/status", ORDERS)
        assert (set(document["topics"]), document["hidden_topics"]) == ({"orders/1"}, 3)
        # Without a credential /status is still refused.
        assert (await http.get("/status")).status_code == 401


@pytest.fixture
async def app_with_admin() -> AsyncIterator[Starlette]:
    async with running_hub(jwt_settings()) as app:
        yield app


async def test_a_topic_known_only_by_its_subscribers_is_hidden_too(
    app_with_admin: Starlette,
) -> None:
    app = app_with_admin
    async with client_for(app) as http:
        with anyio.fail_after(10):
            async with stream_asgi(app, "/events?topic=users/carol/inbox", headers=ADMIN) as stream:
                await stream.start()  # subscribed: the topic exists here with no history
                admin_view = await _json(http, "/status", ADMIN)
                assert admin_view["topics"]["users/carol/inbox"] == {
                    "subscribers": 1,
                    "history": 0,
                    "history_bytes": 0,  # admins see how much of the byte budget is used
                }
                view = await _json(http, "/status", ORDERS)
                stats = await _json(http, "/dashboard/stats", ORDERS)
        assert (view["topics"], view["hidden_topics"]) == ({}, 1)
        assert view["connections"] == 1  # an aggregate: one stream, no name
        assert (stats["topics"], stats["hidden_topics"], stats["subscribers"]) == ({}, 1, 1)


async def test_metrics_name_no_topic() -> None:
    # A scrape has no reader to filter for: metrics carry no per-topic label at all.
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        await _fill(http)
        scraped = await http.get("/metrics", headers=PUBLISH_ONLY)
        assert scraped.status_code == 200
        assert "ssehub_events_published_total 4.0" in scraped.text
        for topic in ("orders/1", "news", *SECRET_TOPICS):
            assert topic not in scraped.text
        assert "topic=" not in scraped.text


async def test_without_auth_every_topic_is_listed() -> None:
    async with running_hub() as app, client_for(app) as http:
        for topic in ("a", "b"):
            await http.post("/publish", json={"topic": topic, "data": "x"})
        document = await _json(http, "/status", {})
        assert set(document["topics"]) == {"a", "b"}
        assert "hidden_topics" not in document
        stats = await _json(http, "/dashboard/stats", {})
        assert (set(stats["topics"]), stats["topic_count"]) == ({"a", "b"}, 2)
        assert "hidden_topics" not in stats
