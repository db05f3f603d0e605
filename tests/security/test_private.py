"""Private events reach only subscribers granted one of their topics, live and on replay."""

from __future__ import annotations

import anyio
import pytest

from ssehub.backends import MemoryBackend
from ssehub.broker import Broker, Publication
from ssehub.hub import RESET_HEADER
from ssehub.testing import stream_asgi

from .support import bearer, client_for, jwt_settings, running_hub, token

pytestmark = pytest.mark.anyio

PUBLISHER = bearer(token(["*"]))


async def _publish(http: object, topic: str, data: str, *, private: bool = False) -> str:
    response = await http.post(  # type: ignore[attr-defined]
        "/publish", json={"topic": topic, "data": data, "private": private}, headers=PUBLISHER
    )
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


async def test_live_private_events_only_reach_authorized_subscribers() -> None:
    settings = jwt_settings(anonymous_subscribe=True)
    async with running_hub(settings) as app, client_for(app) as http:
        allowed = bearer(token(subscribe=["a"]))
        other = bearer(token(subscribe=["b"]))
        with anyio.fail_after(5):
            async with (
                stream_asgi(app, "/events?topic=a", headers=allowed) as granted,
                stream_asgi(app, "/events?topic=a", headers=other) as ungranted,
                stream_asgi(app, "/events?topic=a") as anonymous,
            ):
                for stream in (granted, ungranted, anonymous):
                    await stream.start()
                secret_id = await _publish(http, "a", "secret", private=True)
                public_id = await _publish(http, "a", "public")
                events = await granted.events().take(2)
                assert [(e.id, e.data) for e in events] == [
                    (secret_id, "secret"),
                    (public_id, "public"),
                ]
                for stream in (ungranted, anonymous):
                    event = await stream.events().next_event()
                    assert (event.id, event.data) == (public_id, "public")
            for stream in (ungranted, anonymous):
                raw = b"".join(m.get("body", b"") for m in stream.body_messages)
                assert b"public" in raw  # the body was captured
                assert b"secret" not in raw
                assert secret_id.encode() not in raw


async def test_private_events_do_not_leak_on_replay() -> None:
    settings = jwt_settings(anonymous_subscribe=True)
    async with running_hub(settings) as app, client_for(app) as http:
        cursor = await _publish(http, "a", "before")
        secret_id = await _publish(http, "a", "secret", private=True)
        after_id = await _publish(http, "a", "after")
        only_b = bearer(token(subscribe=["b"]))
        with anyio.fail_after(5):
            headers = {**only_b, "Last-Event-ID": cursor}
            async with stream_asgi(app, "/events?topic=a", headers=headers) as stream:
                await stream.start()
                assert RESET_HEADER.lower() not in stream.headers
                assert all(secret_id not in value for value in stream.headers.values())
                event = await stream.events().next_event()
                assert (event.id, event.data) == (after_id, "after")
            raw = b"".join(m.get("body", b"") for m in stream.body_messages)
            assert after_id.encode() in raw  # the body was captured
            assert b"secret" not in raw
            assert secret_id.encode() not in raw
            # A subscriber granted "a" gets the private event on the same replay.
            headers = {**bearer(token(subscribe=["a"])), "Last-Event-ID": cursor}
            async with stream_asgi(app, "/events?topic=a", headers=headers) as stream:
                await stream.start()
                events = await stream.events().take(2)
                assert [e.id for e in events] == [secret_id, after_id]


async def test_private_event_on_several_topics_follows_the_mercure_rule() -> None:
    # A private event on a and b reaches a subscriber of a that is granted b.
    settings = jwt_settings(anonymous_subscribe=True)
    async with running_hub(settings) as app, client_for(app) as http:
        with anyio.fail_after(5):
            headers = bearer(token(subscribe=["b"]))
            async with stream_asgi(app, "/events?topic=a", headers=headers) as stream:
                await stream.start()
                response = await http.post(
                    "/publish",
                    json={"topics": ["a", "b"], "data": "both", "private": True},
                    headers=PUBLISHER,
                )
                assert response.status_code == 200
                assert (await stream.events().next_event()).data == "both"


async def test_batch_private_flags_are_per_event() -> None:
    async with running_hub(jwt_settings(anonymous_subscribe=True)) as app, client_for(app) as http:
        with anyio.fail_after(5):
            async with stream_asgi(app, "/events?topic=t") as stream:
                await stream.start()
                batch = [
                    {"topic": "t", "data": "hidden", "private": True},
                    {"topic": "t", "data": "shown"},
                ]
                response = await http.post("/publish", json=batch, headers=PUBLISHER)
                assert response.status_code == 200
                assert (await stream.events().next_event()).data == "shown"


async def test_memory_backend_keeps_the_flag_in_history() -> None:
    async with Broker(MemoryBackend(epoch="e")) as broker:
        first = await broker.publish("t", "x")
        stored = await broker.publish_many(
            [Publication("t", "p", private=True), Publication("t", "q")]
        )
        assert [s.private for s in stored] == [True, False]
        replay = await broker.backend.replay(["t"], first.id)
        assert [(e.event.data, e.private) for e in replay.events] == [("p", True), ("q", False)]


async def test_drop_notices_do_not_count_private_events_the_reader_cannot_see() -> None:
    # Under drop_oldest a reader is told how many events it missed; counting private events it
    # could never read would reveal how many passed. An authorized reader's count includes them.
    from ssehub.hub import Principal
    from ssehub.hub._patterns import NOTHING, TopicPatterns
    from ssehub.wire import EventParser

    anonymous = Principal("anonymous", NOTHING, NOTHING, any_topic=True)
    granted = Principal("token", NOTHING, TopicPatterns(["a"]))
    async with Broker(queue_size=2, overflow="drop_oldest") as broker:
        readers = {
            "anonymous": broker.subscribe("a", visible=anonymous.may_read),
            "granted": broker.subscribe("a", visible=granted.may_read),
        }
        # Five events into queues of two: the first three are dropped (two of them private).
        for number, private in enumerate([True, False, True, False, False]):
            await broker.publish("a", f"e{number}", private=private)
        notices = {}
        with anyio.fail_after(5):
            for name, reader in readers.items():
                frames = reader.take_frames()
                assert frames
                events = list(EventParser().feed(b"".join(frames)))
                notices[name] = [e.data for e in events if e.event == "ssehub.dropped"]
                assert [e.data for e in events if e.event == "message"] == ["e3", "e4"]
                await reader.aclose()
    assert notices == {"anonymous": ['{"dropped":1}'], "granted": ['{"dropped":3}']}
