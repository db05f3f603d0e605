"""``GET /events?topic=orders/*``: pattern subscriptions through the hub, their limit, their
authorization (a grant must cover every topic a pattern can match), private events, resume, and
the status pages with pattern subscribers."""

from __future__ import annotations

import anyio
import httpx
import pytest

from ssehub.hub import HubSettings
from ssehub.testing import stream_asgi

from .support import assert_error, bearer, client_for, hub_of, jwt_settings, running_hub, token

pytestmark = pytest.mark.anyio

PUBLISHER = bearer(token(["*"]))


async def publish(
    client: httpx.AsyncClient, topic: str, data: str, *, private: bool = False
) -> dict[str, object]:
    body = {"topic": topic, "data": data, "private": private}
    response = await client.post("/publish", json=body, headers=PUBLISHER)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


async def test_pattern_stream_live_and_resume() -> None:
    async with running_hub() as app, client_for(app) as client:
        start = await publish(client, "orders/1", "start")
        with anyio.fail_after(10):
            async with stream_asgi(app, "/events?topic=orders/*&topic=x") as stream:
                await stream.start()
                assert stream.status_code == 200
                one = await publish(client, "orders/new", "one")  # a topic created now
                assert one["subscribers"] == 1  # the pattern subscriber counts
                await publish(client, "users/1", "not mine")
                two = await publish(client, "x", "two")
                events = await stream.events().take(2)
                assert [(e.id, e.data) for e in events] == [(one["id"], "one"), (two["id"], "two")]
                document = (await client.get("/status")).json()
                assert document["connections"] == 1
                assert "orders/*" not in document["topics"]
                stats = (await client.get("/dashboard/stats")).json()
                assert stats["subscribers"] == 1
            # Resume from the start: every matched topic, in order, then live.
            headers = {"Last-Event-ID": str(start["id"])}
            async with stream_asgi(app, "/events?topic=orders/*", headers=headers) as stream:
                await stream.start()
                assert [e.data for e in await stream.events().take(1)] == ["one"]
                live = await publish(client, "orders/2/items", "live")
                event = await stream.events().next_event()
                assert (event.id, event.data) == (live["id"], "live")
        assert hub_of(app).broker.patterns() == {}


async def test_too_many_patterns_is_a_400() -> None:
    async with running_hub(HubSettings(max_patterns=1)) as app:
        with anyio.fail_after(5):
            async with stream_asgi(app, "/events?topic=a/*&topic=b/*") as stream:
                await stream.start()
                assert stream.status_code == 400
                body = await stream.read_all()
        assert b'"error":"too_many_topics"' in body
        assert b"too many patterns (at most 1" in body
        assert hub_of(app).broker.statistics().subscribers == 0
        async with client_for(app) as client:
            # Exact topics are not patterns: as many as max_topics.
            response = await client.head("/events?topic=a&topic=b&topic=c/*")
            assert response.status_code == 200


@pytest.mark.parametrize(
    ("grants", "pattern", "status"),
    [
        (["*"], "*", 200),
        (["*"], "orders/*", 200),
        (["orders/*"], "orders/*", 200),
        (["orders/*"], "orders/**", 200),
        (["orders/*"], "orders/1/*", 200),  # a prefix grant covers it
        (["orders/*"], "orders/*/items", 200),
        (["orders/*"], "*", 403),
        (["orders/*"], "order*", 403),  # would match order-archive/1
        (["orders/*"], "users/*", 403),
        (["orders/1", "orders/2"], "orders/*", 403),  # only some of what it matches
        (["*/items"], "orders/*/items", 403),  # covered in fact; the sound rule says no
    ],
)
async def test_a_pattern_needs_a_grant_covering_it(
    grants: list[str], pattern: str, status: int
) -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as client:
        headers = bearer(token(subscribe=grants))
        response = await client.head(f"/events?topic={pattern}", headers=headers)
        assert response.status_code == status
        if status == 403:
            response = await client.get(f"/events?topic={pattern}", headers=headers)
            assert_error(response, 403, "forbidden")
            assert hub_of(app).broker.statistics().subscribers == 0
        anonymous = await client.get(f"/events?topic={pattern}")
        assert_error(anonymous, 401, "unauthorized")


async def test_private_events_reach_a_pattern_subscriber_only_where_granted() -> None:
    # With anonymous subscriptions anyone may open any pattern, for public events; a private
    # event goes only to a reader granted one of its topics.
    settings = jwt_settings(anonymous_subscribe=True)
    async with running_hub(settings) as app, client_for(app) as client:
        granted = bearer(token(subscribe=["orders/1"]))
        with anyio.fail_after(10):
            async with (
                stream_asgi(app, "/events?topic=orders/*", headers=granted) as reader,
                stream_asgi(app, "/events?topic=orders/*") as anonymous,
            ):
                await reader.start()
                await anonymous.start()
                hidden = await publish(client, "orders/2", "secret-2", private=True)
                mine = await publish(client, "orders/1", "secret-1", private=True)
                public = await publish(client, "orders/3", "public")
                events = await reader.events().take(2)
                assert [e.data for e in events] == ["secret-1", "public"]
                event = await anonymous.events().next_event()
                assert (event.id, event.data) == (public["id"], "public")
            for stream in (reader, anonymous):
                raw = b"".join(m.get("body", b"") for m in stream.body_messages)
                assert b"secret-2" not in raw
                assert str(hidden["id"]).encode() not in raw
            raw = b"".join(m.get("body", b"") for m in anonymous.body_messages)
            assert str(mine["id"]).encode() not in raw
