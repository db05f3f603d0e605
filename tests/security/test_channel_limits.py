"""Channel routes obey the hub's limits as the topic routes do: publish rate, Last-Event-ID length.

Every refusal is the hub's JSON error, and a refused request delivers nothing: no message is
queued for any listener, no listener stream is opened.
"""

from __future__ import annotations

import json

import anyio
import pytest

from ssehub.broker import Broker
from ssehub.channels import Channel, Message
from ssehub.hub import HubSettings
from ssehub.testing import ManualClock, drain_listener, stream_asgi

from .support import assert_error, bearer, client_for, hub_of, jwt_settings, running_hub, token

pytestmark = pytest.mark.anyio

MESSAGE = {"type": "note", "payload": "hi"}


def channel_of(app: object, name: str = "jobs") -> Channel:
    channels = hub_of(app).channels  # type: ignore[arg-type]
    assert channels is not None
    return channels.registry.get(name)


async def test_broadcast_and_dispatch_spend_the_publish_rate_per_address() -> None:
    clock = ManualClock()
    settings = HubSettings(ping=3600, publish_rate=1.0, publish_burst=1)
    async with (
        Broker(clock=clock) as broker,
        running_hub(settings, broker=broker) as app,
        client_for(app) as http,
    ):
        await http.post("/channels", json={"name": "jobs"})
        await http.post("/channels/jobs/listeners", json={"id": "w1"})
        channel = channel_of(app)
        assert (await http.post("/channels/jobs/broadcast", json=MESSAGE)).status_code == 200
        for path in ("/channels/jobs/broadcast", "/channels/jobs/listeners/w1/messages"):
            response = await http.post(path, json={"type": "refused"})
            assert_error(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
        # The bucket is the one /publish uses: sending through a channel is no way around it.
        assert_error(
            await http.post("/publish", json={"topic": "t", "data": 1}), 429, "rate_limited"
        )
        # A request that fails validation or names an unknown listener spends nothing.
        clock.advance(1)
        bad = await http.post("/channels/jobs/listeners/nobody/messages", json=MESSAGE)
        assert_error(bad, 404, "unknown_listener")
        dispatched = await http.post("/channels/jobs/listeners/w1/messages", json=MESSAGE)
        assert dispatched.status_code == 200
        assert [m.type for m in await drain_listener(channel, "w1")] == ["note", "note"]
        assert channel.statistics().published == 2


async def test_channel_sends_spend_the_publish_rate_per_token() -> None:
    clock = ManualClock()
    settings = jwt_settings(ping=3600, publish_rate=1.0, publish_burst=2)
    first = bearer(token(["channels/*"], ["channels/*"]))
    other = bearer(token(["channels/*"], ["channels/*"], sub="other"))
    async with (
        Broker(clock=clock) as broker,
        running_hub(settings, broker=broker) as app,
        client_for(app) as http,
    ):
        await http.post("/channels", json={"name": "jobs"}, headers=first)
        await http.post("/channels/jobs/listeners", json={"id": "w1"}, headers=first)
        for _ in range(2):
            sent = await http.post("/channels/jobs/broadcast", json=MESSAGE, headers=first)
            assert sent.status_code == 200
        refused = await http.post(
            "/channels/jobs/listeners/w1/messages", json=MESSAGE, headers=first
        )
        assert_error(refused, 429, "rate_limited")
        # Another token has its own bucket.
        sent = await http.post("/channels/jobs/broadcast", json=MESSAGE, headers=other)
        assert sent.status_code == 200
        assert len(await drain_listener(channel_of(app), "w1")) == 3


@pytest.mark.parametrize("where", ["header", "query"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_listener_stream_refuses_an_oversized_last_event_id(where: str, method: str) -> None:
    async with running_hub(HubSettings(ping=3600)) as app, client_for(app) as http:
        await http.post("/channels", json={"name": "jobs"})
        await http.post("/channels/jobs/listeners", json={"id": "w1"})
        channel = channel_of(app)
        listener = channel.get_listener("w1")
        value = "1" * 10_000
        path = "/channels/jobs/listeners/w1/events"
        headers = {"last-event-id": value} if where == "header" else {}
        if where == "query":
            path += f"?lastEventId={value}"
        with anyio.fail_after(5):
            async with stream_asgi(app, path, method=method, headers=headers) as stream:
                await stream.start()
                assert stream.status_code == 400
                assert stream.headers["content-type"].startswith("application/json")
                body = await stream.read_all()
            if method == "GET":
                document = json.loads(body)
                assert document["error"] == "last_event_id_too_long"
                assert value not in document["detail"]
            # No stream was opened: the listener is still free and still waits for a client.
            assert not listener._consumed
            assert hub_of(app).guard.connections.open == 0
            async with stream_asgi(app, "/channels/jobs/listeners/w1/events") as stream:
                await stream.start()
                assert stream.status_code == 200
                await channel.dispatch("w1", Message("ok"))
                assert [e.event for e in await stream.events().take(1)] == ["ok"]
