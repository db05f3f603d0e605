"""Channel routes follow the topic rules: channel ``N`` is the topic ``channels/N``."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import anyio
import pytest

from ssehub.broker import Broker
from ssehub.hub import HubSettings
from ssehub.testing import ManualClock, stream_asgi

from .support import assert_error, bearer, client_for, hub_of, jwt_settings, running_hub, token

pytestmark = pytest.mark.anyio

MESSAGE = {"type": "note", "payload": "hi"}


async def test_channel_routes_need_grants() -> None:
    admin = bearer(token(["channels/*"], ["channels/*"]))
    jobs_only = bearer(token(["channels/jobs"], ["channels/jobs"]))
    async with running_hub(jwt_settings(ping=3600)) as app, client_for(app) as http:
        # No credential: 401 everywhere, nothing created.
        assert_error(await http.post("/channels", json={"name": "jobs"}), 401, "unauthorized")
        assert_error(await http.get("/channels"), 401, "unauthorized")
        # Creating channels needs a grant over all of them.
        response = await http.post("/channels", json={"name": "jobs"}, headers=jobs_only)
        assert_error(response, 403, "forbidden")
        for name in ("jobs", "admin"):
            created = await http.post("/channels", json={"name": name}, headers=admin)
            assert created.status_code == 200
        # A channel grant covers that channel only.
        listener = await http.post("/channels/jobs/listeners", headers=jobs_only)
        assert listener.status_code == 200
        listener_id = listener.json()["id"]
        response = await http.post("/channels/admin/listeners", headers=jobs_only)
        assert_error(response, 403, "forbidden")
        assert (
            await http.post("/channels/jobs/broadcast", json=MESSAGE, headers=jobs_only)
        ).status_code == 200
        response = await http.post("/channels/admin/broadcast", json=MESSAGE, headers=jobs_only)
        assert_error(response, 403, "forbidden")
        assert_error(await http.delete("/channels/admin", headers=jobs_only), 403, "forbidden")
        # Streaming a listener needs a subscribe grant on its channel.
        path = f"/channels/jobs/listeners/{listener_id}/events"
        with anyio.fail_after(5):
            async with stream_asgi(app, path) as stream:
                await stream.start()
                assert stream.status_code == 401
        assert (await http.get("/channels", headers=admin)).json()["channels"] == [
            {"name": "admin", "listeners": 0},
            {"name": "jobs", "listeners": 1},
        ]


async def test_listener_stream_ends_at_token_expiry() -> None:
    clock = ManualClock()
    grant = bearer(token(["channels/jobs"], ["channels/jobs"], lifetime=600))
    async with (
        Broker(clock=clock) as broker,
        running_hub(jwt_settings(ping=3600), broker=broker) as app,
        client_for(app) as http,
    ):
        admin = bearer(token(["channels/*"], ["channels/*"]))
        assert (await http.post("/channels", json={"name": "jobs"}, headers=admin)).is_success
        listener_id = (await http.post("/channels/jobs/listeners", headers=grant)).json()["id"]
        path = f"/channels/jobs/listeners/{listener_id}/events"
        with anyio.fail_after(5):
            async with stream_asgi(app, path, headers=grant) as stream:
                await stream.start()
                assert stream.status_code == 200
                while clock.sleepers == 0:
                    await anyio.wait_all_tasks_blocked()
                await http.post("/channels/jobs/broadcast", json=MESSAGE, headers=grant)
                assert (await stream.events().next_event()).data == '"hi"'
                clock.advance(300)  # half-way: still open
                await anyio.wait_all_tasks_blocked()
                assert not stream.app_done
                clock.advance(301)
                await stream.events().rest()
                assert stream.complete  # a clean end of body, not a cut connection
        assert hub_of(app).guard.connections.open == 0


async def test_listener_streams_take_connection_places() -> None:
    settings = HubSettings(max_connections_per_address=2, ping=3600)
    async with running_hub(settings) as app, client_for(app) as http:
        assert (await http.post("/channels", json={"name": "jobs"})).is_success
        ids = [(await http.post("/channels/jobs/listeners")).json()["id"] for _ in range(3)]
        paths = [f"/channels/jobs/listeners/{listener}/events" for listener in ids]
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                for path in paths[:2]:
                    stream = await stack.enter_async_context(stream_asgi(app, path))
                    assert (await stream.start()).status_code == 200
                async with stream_asgi(app, paths[2]) as refused:
                    await refused.start()
                    assert refused.status_code == 429
                    assert json.loads(await refused.read_all())["error"] == "too_many_connections"
                # A topic stream counts against the same places.
                async with stream_asgi(app, "/events?topic=t") as refused:
                    assert (await refused.start()).status_code == 429
            assert hub_of(app).guard.connections.open == 0
