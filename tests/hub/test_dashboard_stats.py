"""``/dashboard/stats``: what "connections" counts (topic streams and channel listener streams)."""

from __future__ import annotations

import anyio
import pytest

from ssehub.hub import HubSettings
from ssehub.testing import stream_asgi

from .conftest import client_for, open_events, running_hub


@pytest.mark.anyio
@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "no-metrics"])
async def test_connections_count_topic_and_listener_streams(metrics: bool) -> None:
    # With metrics on the number is the ssehub_open_connections gauge; without, it is counted
    # from the broker and the channels. Either way a listener stream is a connection, though
    # the hub broker does not see it (each channel has a broker of its own).
    async with running_hub(HubSettings(metrics=metrics)) as app, client_for(app) as client:
        await client.post("/channels", json={"name": "jobs"})
        streamed = (await client.post("/channels/jobs/listeners", json={"id": "w1"})).json()
        await client.post("/channels/jobs/listeners", json={"id": "idle"})  # no stream: none
        with anyio.fail_after(10):
            async with (
                open_events(app, "topic=orders") as topic_stream,
                stream_asgi(app, streamed["events"]) as listener_stream,
            ):
                await topic_stream.start()
                await listener_stream.start()
                document = (await client.get("/dashboard/stats")).json()
        assert document["connections"] == 2
        assert document["subscribers"] == 1  # what the topics' subscriber counts add up to
        assert document["topics"]["orders"]["subscribers"] == 1
        if metrics:
            scraped = (await client.get("/metrics")).text
            assert "ssehub_open_connections 0.0" in scraped  # both closed now
        closed = (await client.get("/dashboard/stats")).json()
        assert (closed["connections"], closed["subscribers"]) == (0, 0)
