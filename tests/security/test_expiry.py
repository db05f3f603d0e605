"""A stream ends when its token expires, timed on the broker's clock (no real waiting)."""

from __future__ import annotations

import anyio
import pytest

from ssehub.broker import Broker
from ssehub.hub import create_app
from ssehub.testing import ManualClock, stream_asgi

from .support import bearer, jwt_settings, token

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("lifetime", "leeway", "still_open_at", "ended_at"),
    [
        pytest.param(600, 0, 300, 601, id="at-exp"),
        # A token 5 s past its exp is accepted with a 30 s leeway; its stream must last the
        # rest of the leeway (about 25 s), not end at once and make the client reconnect in a
        # loop until it gets a new token.
        pytest.param(-5, 30, 20, 30, id="inside-the-leeway"),
    ],
)
async def test_stream_ends_at_token_expiry(
    lifetime: float, leeway: float, still_open_at: float, ended_at: float
) -> None:
    clock = ManualClock()
    settings = jwt_settings(jwt_leeway=leeway)
    async with Broker(clock=clock) as broker:
        app = create_app(settings, broker=broker)
        headers = bearer(token(subscribe=["t"], lifetime=lifetime))
        with anyio.fail_after(5):
            async with stream_asgi(app, "/events?topic=t", headers=headers) as stream:
                await stream.start()
                assert stream.status_code == 200
                while clock.sleepers == 0:
                    await anyio.wait_all_tasks_blocked()
                await broker.publish("t", "before expiry")
                assert (await stream.events().next_event()).data == "before expiry"
                clock.advance(still_open_at)
                await anyio.wait_all_tasks_blocked()
                assert not stream.app_done
                clock.advance(ended_at - still_open_at)
                await stream.events().rest()
                assert stream.complete
            assert broker.statistics().subscribers == 0
            assert app.state.hub.guard.connections.open == 0


async def test_api_key_streams_do_not_expire(tmp_path: object) -> None:
    from pathlib import Path

    keys = Path(str(tmp_path)) / "keys"
    keys.write_text("a-long-enough-api-key-123\n")
    clock = ManualClock()
    async with Broker(clock=clock) as broker:
        app = create_app(jwt_settings(api_keys_file=str(keys)), broker=broker)
        with anyio.fail_after(5):
            headers = bearer("a-long-enough-api-key-123")
            async with stream_asgi(app, "/events?topic=t", headers=headers) as stream:
                await stream.start()
                await anyio.wait_all_tasks_blocked()
                assert clock.sleepers == 0  # no expiry timer
                await broker.publish("t", "x")
                assert (await stream.events().next_event()).data == "x"
