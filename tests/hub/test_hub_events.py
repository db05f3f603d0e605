"""GET /events through the ASGI app: framing, subscribe-before-headers, exact resume, resets,
pings, shutdown and slow clients."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from ssehub.broker import RESET_EVENT_TYPE, Broker
from ssehub.hub import RESET_HEADER, HubSettings, create_app
from ssehub.testing import http_scope, stream_asgi

from .conftest import client_for, hub_of, open_events, running_hub

pytestmark = pytest.mark.anyio


async def publish(client: httpx.AsyncClient, topic: str, data: str, **extra: object) -> str:
    response = await client.post("/publish", json={"topic": topic, "data": data, **extra})
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


async def test_stream_headers_and_framing(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=news") as stream:
            await stream.start()
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            assert RESET_HEADER.lower() not in stream.headers
            first = await stream.receive_chunk()
            assert first is not None
            assert first.startswith(b":")  # opening comment, flushed before any event
            event_id = await publish(client, "news", "line 1\nline 2", event="headline")
            raw = await stream.receive_chunk()
            assert raw == (
                f"id: {event_id}\nevent: headline\ndata: line 1\ndata: line 2\n\n".encode()
            )


async def test_every_event_has_an_id(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a&topic=b&topic=a") as stream:
            await stream.start()
            ids = [await publish(client, topic, str(i)) for i, topic in enumerate("abcab")]
            events = await stream.events().take(4)
            assert [e.id for e in events] == [ids[0], ids[1], ids[3], ids[4]]
            assert len(set(ids)) == 5


async def test_subscribed_before_the_headers_go_out(hub_app: Starlette) -> None:
    # The moment the client sees the status line, an event published from anywhere reaches it.
    broker = hub_of(hub_app).broker
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=t") as stream:
            await stream.start()
            stored = await broker.publish("t", "right after the headers")
            event = await stream.events().next_event()
            assert (event.id, event.data) == (stored.id, "right after the headers")


async def test_exact_resume_through_http(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(10):
        async with open_events(hub_app, "topic=feed") as stream:
            await stream.start()
            ids = [await publish(client, "feed", f"event {n}") for n in range(1, 11)]
            seen = await stream.events().take(4)
            assert [e.data for e in seen] == [f"event {n}" for n in range(1, 5)]
            # The id of the last event *taken*: the parser may already hold later ones from the
            # same coalesced chunk, and a client resumes from what it delivered.
            last = seen[-1].id
        assert last == ids[3]
        # Two more while disconnected.
        ids += [await publish(client, "feed", f"event {n}") for n in (11, 12)]
        async with open_events(hub_app, "topic=feed", {"Last-Event-ID": last}) as stream:
            await stream.start()
            assert RESET_HEADER.lower() not in stream.headers
            replayed = await stream.events().take(8)
            assert [e.id for e in replayed] == ids[4:]
            assert [e.data for e in replayed] == [f"event {n}" for n in range(5, 13)]
            # Then live, with no duplicate at the handover.
            live_id = await publish(client, "feed", "live")
            event = await stream.events().next_event()
            assert (event.id, event.data) == (live_id, "live")


async def test_resume_with_query_parameter_and_header_precedence(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    ids = [await publish(client, "q", str(n)) for n in range(5)]
    with anyio.fail_after(5):
        async with open_events(hub_app, f"topic=q&lastEventId={ids[1]}") as stream:
            await stream.start()
            assert [e.id for e in await stream.events().take(3)] == ids[2:]
        # A reconnecting browser sends the header; it is newer than the id in the URL.
        async with open_events(
            hub_app, f"topic=q&lastEventId={ids[1]}", {"Last-Event-ID": ids[3]}
        ) as stream:
            await stream.start()
            assert [e.id for e in await stream.events().take(1)] == ids[4:]


async def test_resume_across_several_topics(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    ids = [await publish(client, topic, topic + str(n)) for n, topic in enumerate("abcabc")]
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a&topic=c", {"Last-Event-ID": ids[0]}) as stream:
            await stream.start()
            events = await stream.events().take(3)
            assert [e.data for e in events] == ["c2", "a3", "c5"]


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [
        ("not valid!", "malformed"),
        ("x" * 65, "malformed"),
        ("1\r\nevent: spoof", "malformed"),
        ("1\nid: 2", "malformed"),
        ("a\x00", "malformed"),
        ("\xff\xfe", "malformed"),  # not UTF-8 (the scope carries these raw bytes)
        ("ffffffff-1", "unknown"),
    ],
    ids=lambda value: repr(value)[:20],
)
async def test_reset_header_and_event(
    hub_app: Starlette, client: httpx.AsyncClient, last_event_id: str, reason: str
) -> None:
    await publish(client, "r", "old")
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=r", {"Last-Event-ID": last_event_id}) as stream:
            await stream.start()
            assert stream.headers[RESET_HEADER] == reason
            reset = await stream.events().next_event()
            assert reset.event == RESET_EVENT_TYPE
            assert reset.data == f'{{"reason":"{reason}"}}'
            assert reset.id == ""  # a notice never moves the browser's lastEventId
            new_id = await publish(client, "r", "new")
            event = await stream.events().next_event()
            assert (event.id, event.data) == (new_id, "new")
            body = b"".join(m.get("body", b"") for m in stream.body_messages)
            raw_headers = b"\n".join(b"%s: %s" % pair for pair in stream.headers.raw)
            # Never reflected, in any encoding, into the stream or a response header.
            for form in {last_event_id.encode(), last_event_id.encode("latin-1")}:
                assert form not in body
                assert form not in raw_headers


async def test_a_huge_last_event_id_is_refused_without_being_reflected(
    hub_app: Starlette,
) -> None:
    value = "x" * 10_000
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=r", {"Last-Event-ID": value}) as stream:
            await stream.start()
            assert stream.status_code == 400
            body = await stream.read_all()
    assert b'"error":"last_event_id_too_long"' in body
    assert b"x" * 300 not in body
    assert hub_of(hub_app).broker.statistics().subscribers == 0


async def test_last_event_id_query_parameter_is_validated_too(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    await publish(client, "r", "old")
    with anyio.fail_after(5):
        query = "topic=r&lastEventId=1%0D%0Aevent%3A%20spoof"
        async with open_events(hub_app, query) as stream:
            await stream.start()
            assert stream.headers[RESET_HEADER] == "malformed"
            reset = await stream.events().next_event()
            assert (reset.event, reset.data) == (RESET_EVENT_TYPE, '{"reason":"malformed"}')
            body = b"".join(m.get("body", b"") for m in stream.body_messages)
            assert b"spoof" not in body


async def test_expired_reset_when_history_has_moved_on(client: httpx.AsyncClient) -> None:
    async with running_hub(HubSettings(history=3)) as app, client_for(app) as http:
        ids = [await publish(http, "h", str(n)) for n in range(10)]
        with anyio.fail_after(5):
            async with open_events(app, "topic=h", {"Last-Event-ID": ids[0]}) as stream:
                await stream.start()
                assert stream.headers[RESET_HEADER] == "expired"
                reset = await stream.events().next_event()
                assert (reset.event, reset.data) == (RESET_EVENT_TYPE, '{"reason":"expired"}')


async def test_idle_stream_gets_pings() -> None:
    async with running_hub(HubSettings(ping=0.01)) as app:
        with anyio.fail_after(5):
            async with open_events(app, "topic=quiet") as stream:
                await stream.start()
                assert (await stream.receive_chunk() or b"").startswith(b":")  # opening comment
                ping = await stream.receive_chunk()
                assert ping is not None
                assert ping.startswith(b": ping")
                assert stream.events().received == []


async def test_head_does_not_subscribe(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    response = await client.head("/events?topic=t")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert hub_of(hub_app).broker.statistics().subscribers == 0


async def test_head_has_the_headers_of_get_and_an_empty_body(hub_app: Starlette) -> None:
    seen = {}
    with anyio.fail_after(5):
        for method in ("GET", "HEAD"):
            scope = http_scope("/events", method=method, query_string="topic=t")
            async with stream_asgi(hub_app, scope=scope) as stream:
                await stream.start()
                headers = dict(stream.headers.items())
                headers.pop("x-request-id", None)
                seen[method] = headers
                if method == "HEAD":
                    assert await stream.read_all() == b""
    assert seen["HEAD"] == seen["GET"]
    assert "content-length" not in seen["HEAD"]
    assert hub_of(hub_app).broker.statistics().subscribers == 0


async def test_disconnect_releases_the_subscription(hub_app: Starlette) -> None:
    broker = hub_of(hub_app).broker
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a&topic=b") as stream:
            await stream.start()
            assert broker.subscriber_count() == 1
            await stream.disconnect()
            await stream.wait_closed()
        assert broker.statistics().subscribers == 0
        assert broker.statistics().topics == 0


async def test_drain_ends_every_stream_cleanly(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    hub = hub_of(hub_app)
    with anyio.fail_after(5):
        async with open_events(hub_app, "topic=a") as one, open_events(hub_app, "topic=b") as two:
            await one.start()
            await two.start()
            await publish(client, "a", "before")
            assert (await one.events().next_event()).data == "before"
            hub.drain()
            await one.events().rest()
            await two.events().rest()
            assert one.complete
            assert two.complete  # a final empty body: a clean end, not a reset connection
            await one.wait_closed()
            await two.wait_closed()
        assert hub.broker.statistics().subscribers == 0
        # New streams opened while draining end at once too.
        async with open_events(hub_app, "topic=c") as late:
            await late.start()
            await late.events().rest()
            assert late.complete


@pytest.mark.parametrize("send_timeout", [None, 30.0])
async def test_drain_ends_a_stream_whose_client_stopped_reading(
    monkeypatch: pytest.MonkeyPatch, send_timeout: float | None
) -> None:
    # A send blocked on a frozen client must not hold the shutdown: drain() cuts it within
    # SHUTDOWN_SEND_TIMEOUT (shortened here), whatever send_timeout is.
    from ssehub import EventSourceResponse

    monkeypatch.setattr(EventSourceResponse, "SHUTDOWN_SEND_TIMEOUT", 0.1)
    blocked = anyio.Event()
    async with Broker() as broker:
        app = create_app(HubSettings(send_timeout=send_timeout), broker=broker)
        hub = hub_of(app)

        async def frozen_send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and message.get("body") not in (
                b": ok\n\n",
            ):
                blocked.set()
                await anyio.sleep_forever()

        async def receive() -> dict[str, object]:
            await anyio.sleep_forever()
            raise AssertionError

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(app, http_scope("/events?topic=a"), receive, frozen_send)
                while broker.subscriber_count() == 0:
                    await anyio.wait_all_tasks_blocked()
                await broker.publish("a", "stuck")
                await blocked.wait()
                hub.drain()
            # The app call returned by itself (the task group did not need cancelling).
        assert broker.statistics().subscribers == 0
        assert not hub._streams


async def test_lifespan_exit_ends_open_streams() -> None:
    with anyio.fail_after(5):
        app = create_app()
        async with anyio.create_task_group() as group:
            stopping = anyio.Event()
            started = anyio.Event()

            async def run_lifespan() -> None:
                async with app.router.lifespan_context(app):
                    started.set()
                    await stopping.wait()

            group.start_soon(run_lifespan)
            await started.wait()
            async with open_events(app, "topic=t") as stream:
                await stream.start()
                stopping.set()
                await stream.events().rest()
                assert stream.complete


async def test_frozen_client_is_ended_by_the_send_timeout() -> None:
    async with running_hub(HubSettings(send_timeout=0.05)) as app:
        broker = hub_of(app).broker
        with anyio.fail_after(5):
            # A client that accepts the response start and then nothing more.
            async with open_events(app, "topic=t", max_buffered_messages=0) as stream:
                await stream.start()
                await broker.publish("t", "nobody reads this")
                await stream.wait_closed()  # ended quietly: no exception escapes the app
                assert not stream.complete
            assert broker.statistics().subscribers == 0


async def test_max_connection_age_comes_from_the_broker() -> None:
    from ssehub.testing import ManualClock

    clock = ManualClock()
    async with Broker(max_connection_age=60, max_connection_age_jitter=0, clock=clock) as broker:
        app = create_app(broker=broker)
        with anyio.fail_after(5):
            async with open_events(app, "topic=t") as stream:
                await stream.start()
                while clock.sleepers == 0:
                    await anyio.wait_all_tasks_blocked()
                clock.advance(60)
                await stream.events().rest()
                assert stream.complete


async def test_slow_subscriber_is_shed_then_catches_up_from_history() -> None:
    # The default policy: a subscriber whose queue is full loses its stream (a clean end, so
    # the client reconnects) and resumes from history with its last id, losing nothing.
    async with running_hub(HubSettings(queue_size=3, send_timeout=None)) as app:
        broker = hub_of(app).broker
        with anyio.fail_after(5):
            async with open_events(app, "topic=t", max_buffered_messages=0) as slow:
                await slow.start()
                assert await slow.receive_chunk() == b": ok\n\n"
                # The client reads nothing: the hub's send of the first event is stuck on it,
                # then its queue of 3 overflows during the next 11 publishes, and it is shed.
                published = [(await broker.publish("t", "0")).id]
                await anyio.wait_all_tasks_blocked()  # the first event is in flight
                published += [(await broker.publish("t", str(n))).id for n in range(1, 12)]
                first = await slow.events().rest()  # what was in flight, then the end
                assert slow.complete
            assert broker.statistics().shed == 1
            assert broker.statistics().subscribers == 0
            assert [e.id for e in first] == published[:1]
            last = first[-1].id
            async with open_events(app, "topic=t", {"Last-Event-ID": last}) as again:
                await again.start()
                assert "ssehub-reset" not in again.headers
                rest = await again.events().take(len(published) - len(first))
        assert [e.id for e in first + rest] == published


async def test_a_middleware_around_the_hub_sees_every_message_of_a_stream() -> None:
    # Hub streams write their bodies past the hub's own middleware (which only touches the
    # response start), never past anything that wraps the hub: an outer middleware (a user's,
    # around a mounted hub) still sees the start with the hub's headers and every body.
    seen: list[dict[str, object]] = []
    async with Broker() as broker:
        hub_app = create_app(HubSettings(), broker=broker)

        async def outer(scope: dict[str, object], receive: object, send: object) -> None:
            async def spy(message: dict[str, object]) -> None:
                seen.append(message)
                await send(message)  # type: ignore[operator]

            await hub_app(scope, receive, spy)

        with anyio.fail_after(5):
            async with stream_asgi(outer, "/events?topic=a") as stream:
                await stream.start()
                for n in range(3):
                    await broker.publish("a", f"e{n}")
                events = await stream.events().take(3)
                assert [e.data for e in events] == ["e0", "e1", "e2"]
                hub_of(hub_app).drain()
                await stream.events().rest()
                assert stream.complete
    start = seen[0]
    assert start["type"] == "http.response.start"
    assert any(name == b"x-request-id" for name, _ in start["headers"])  # type: ignore[attr-defined]
    bodies = b"".join(m.get("body", b"") for m in seen[1:])  # type: ignore[misc]
    assert bodies.count(b"data: e") == 3
    assert seen[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
