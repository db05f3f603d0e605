"""Two real ``ssehub serve --mercure`` processes on one Redis: an update published on one hub
reaches a Mercure subscriber of the other, and a subscriber resumes exactly on either hub with
the last id it saw, whether the publisher chose it or the hub did.

The hubs, their readiness and the stream reader are those of ``test_redis_hubs.py``.
"""

from __future__ import annotations

import httpx
import pytest

from hub.mercure_support import HUB, PUBLISHER_KEY, mercure_token
from integration.test_redis_hubs import GRACE, TIMEOUT, Reader, broker_url, hubs

pytestmark = [pytest.mark.integration, pytest.mark.redis]

__all__ = ["broker_url"]  # the fixture, used by name

BOOKS = "https://example.com/books/{id}"


def publish(client: httpx.Client, topic: str, data: str, **fields: str) -> str:
    token = mercure_token(["https://example.com/{+path}"])
    response = client.post(
        HUB,
        data={"topic": topic, "data": data, **fields},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.text


def test_mercure_hubs_share_updates_and_resume_on_either(broker_url: str) -> None:
    args = [
        "--port", "0", "--broker", broker_url, "--grace-period", str(GRACE),
        "--mercure", "--mercure-jwt-key", PUBLISHER_KEY, "--no-channels",
    ]  # fmt: skip
    with hubs(args, args) as (hub_a, hub_b):
        url_a, url_b = hub_a.wait_ready(), hub_b.wait_ready()
        # One key for both roles here (--mercure-jwt-key): the subscriber's token is signed with it.
        token = mercure_token(subscribe=[BOOKS], key=PUBLISHER_KEY)
        params = {"topic": BOOKS, "authorization": token}
        sent: list[tuple[str, str]] = []
        with (
            httpx.Client(base_url=url_a, timeout=TIMEOUT) as on_a,
            httpx.Client(base_url=url_b, timeout=TIMEOUT) as on_b,
        ):
            with on_b.stream("GET", HUB, params=params) as stream:
                assert stream.status_code == 200
                for n in range(4):
                    chosen = {"id": f"urn:book:{n}"} if n % 2 == 0 else {}
                    topic = f"https://example.com/books/{n}"
                    sent.append((publish(on_a, topic, f"b{n}", private="on", **chosen), f"b{n}"))
                publish(on_a, "https://example.com/authors/1", "not selected")
                seen = Reader(stream).read(2)
            assert [(e.id, e.data) for e in seen] == sent[: len(seen)]
            assert seen[0].id == "urn:book:0"

            # Resume on B (it served this client) after a publisher-chosen id...
            headers = {"Last-Event-ID": seen[0].id}
            with on_b.stream("GET", HUB, params=params, headers=headers) as stream:
                assert stream.headers["last-event-id"] == "urn:book:0"
                rest = Reader(stream, last_event_id=seen[0].id).read(3)
            assert [(e.id, e.data) for e in rest] == sent[1:]
            # ...and on A, after an id B's history and A's agree on, published meanwhile.
            sent.append((publish(on_b, "https://example.com/books/9", "b9", id="urn:book:9"), "b9"))
            headers = {"Last-Event-ID": sent[2][0]}  # urn:book:2, a chosen id
            with on_a.stream("GET", HUB, params=params, headers=headers) as stream:
                assert stream.headers["last-event-id"] == "urn:book:2"
                rest = Reader(stream, last_event_id=sent[2][0]).read(2)
            assert [(e.id, e.data) for e in rest] == sent[3:]
            # A hub-assigned id resumes on the other hub too.
            headers = {"Last-Event-ID": sent[3][0]}
            with on_b.stream("GET", HUB, params=params, headers=headers) as stream:
                assert stream.headers["last-event-id"] == sent[3][0]
                rest = Reader(stream, last_event_id=sent[3][0]).read(1)
            assert [(e.id, e.data) for e in rest] == sent[4:]
        # Anonymous subscribers are refused without --mercure-anonymous.
        refused = httpx.get(f"{url_a}{HUB}", params={"topic": BOOKS}, timeout=TIMEOUT)
        assert refused.status_code == 401
        assert hub_a.stop() == 0, hub_a.log
