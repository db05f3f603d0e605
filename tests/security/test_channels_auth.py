"""Channel routes follow the topic rules: channel ``N`` is the topic ``channels/N``."""

from __future__ import annotations

import anyio
import pytest

from ssehub.testing import stream_asgi

from .support import assert_error, bearer, client_for, jwt_settings, running_hub, token

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
