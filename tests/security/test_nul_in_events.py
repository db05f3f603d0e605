"""NUL (U+0000) through the hub, as docs/security.md states it.

- In ``data`` it is delivered as is: WHATWG HTML §9.2.6 keeps it in the data buffer, and it
  cannot end a line or start a field, so it injects nothing.
- In an ``event`` type it is refused with 400 ``invalid_event`` before anything is stored.
- A JSON ``data`` value carries it as the six characters ``\\u0000``, never a raw byte.
"""

from __future__ import annotations

import anyio
import pytest

from ssehub.testing import stream_asgi
from ssehub.wire import EventParser

from .support import assert_error, client_for, history_size, running_hub

pytestmark = pytest.mark.anyio


async def test_nul_in_data_is_delivered_byte_exact() -> None:
    data = "a\0b\0\0c\n\0second line"
    async with running_hub() as app, client_for(app) as http:
        with anyio.fail_after(10):
            async with stream_asgi(app, "/events?topic=t") as stream:
                await stream.start()
                published = await http.post("/publish", json={"topic": "t", "data": data})
                assert published.status_code == 200, published.text
                event = await stream.events().next_event()
                assert (event.id, event.data) == (published.json()["id"], data)
                structured = {"topic": "t", "data": {"k": "x\0y"}}
                assert (await http.post("/publish", json=structured)).status_code == 200
                event = await stream.events().next_event()
                assert event.data == '{"k":"x\\u0000y"}'
        raw = b"".join(m.get("body", b"") for m in stream.body_messages)
    assert b"data: a\x00b\x00\x00c\ndata: \x00second line\n" in raw
    assert raw.count(b"\x00") == 4  # the JSON event carries none: it is escaped
    # Any WHATWG parser reads the same: the hub's stream parsed afresh, in one piece.
    assert [e.data for e in EventParser().feed(raw)] == [data, '{"k":"x\\u0000y"}']


@pytest.mark.parametrize("name", ["a\0b", "\0", "created\0"])
async def test_nul_in_an_event_type_is_refused(name: str) -> None:
    async with running_hub() as app, client_for(app) as http:
        response = await http.post("/publish", json={"topic": "t", "data": "x", "event": name})
        assert_error(response, 400, "invalid_event")
        assert "NUL" in response.json()["detail"]
        batch = [{"topic": "t", "data": "ok"}, {"topic": "t", "data": "x", "event": name}]
        assert_error(await http.post("/publish", json=batch), 400, "invalid_event")
        assert await history_size(app, "t") == 0  # nothing stored, the good item neither
