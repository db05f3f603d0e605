"""docs/fastapi.md stays true: every Python example on the page is run as written.

Each ```python block is executed on its own (as a reader would paste it into a module), and the
app it defines is streamed through ``ssehub.testing.stream_asgi``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from ssehub.testing import stream_asgi

DOC = (Path(__file__).resolve().parents[2] / "docs" / "fastapi.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL)
TIMEOUT = 5


def run_block(marker: str) -> dict[str, Any]:
    """Execute the one example containing ``marker``; return its namespace."""
    (source,) = [block for block in BLOCKS if marker in block]
    namespace: dict[str, Any] = {"__name__": "docs_fastapi_example"}
    exec(compile(source, "docs/fastapi.md", "exec"), namespace)
    return namespace


def test_every_example_is_exercised_below() -> None:
    markers = ['"/ticks"', "class Prices", "broker = Broker()"]
    assert len(BLOCKS) == len(markers)
    for marker in markers:
        assert sum(marker in block for block in BLOCKS) == 1, marker


async def get(app: Any, path: str, **kwargs: Any) -> tuple[int, bytes]:
    async with stream_asgi(app, path, **kwargs) as stream:
        await stream.start()
        body = await stream.read_all()
    assert stream.status_code is not None
    return stream.status_code, body


@pytest.mark.anyio
async def test_turning_it_on() -> None:
    app = run_block('"/ticks"')["app"]
    with anyio.fail_after(TIMEOUT):
        async with stream_asgi(app, "/ticks?count=2&interval=0") as stream:
            await stream.start()
            events = await stream.events().rest()
    assert [(e.event, e.data) for e in events] == [
        ("message", '{"n":0,"label":"tick 0"}'),
        ("message", '{"n":1,"label":"tick 1"}'),
        ("end", "done"),
    ]
    content = app.openapi()["paths"]["/ticks"]["get"]["responses"]["200"]["content"]
    data = content["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"]["title"] == "Tick"


@pytest.mark.anyio
async def test_stream_options_per_route() -> None:
    from fastapi import FastAPI

    namespace = run_block("class Prices")
    prices = namespace["Prices"]([])
    assert (prices.ping_interval, prices.send_timeout) == (5, 30)
    app = FastAPI()
    app.include_router(namespace["router"])
    with anyio.fail_after(TIMEOUT):
        assert await get(app, "/prices") == (200, b": ok\n\ndata: 101.5\n\n")


@pytest.mark.anyio
async def test_broker_subscriptions_and_last_event_id() -> None:
    namespace = run_block("broker = Broker()")
    app, broker = namespace["app"], namespace["broker"]
    json_headers = {"content-type": "application/json"}
    with anyio.fail_after(TIMEOUT):
        async with broker:
            ids = []
            for title in ("one", "two"):
                body = json.dumps({"title": title}).encode()
                status, answer = await get(
                    app, "/stories/news", method="POST", headers=json_headers, body=body
                )
                assert status == 200, answer
                ids.append(json.loads(answer)["id"])

            resume = {"last-event-id": ids[0]}
            async with stream_asgi(app, "/feed?topic=news", headers=resume) as stream:
                await stream.start()
                missed = await stream.events().next_event()
                assert (missed.id, missed.event, missed.data) == (
                    ids[1],
                    "story",
                    '{"title":"two"}',
                )
                live = await broker.publish("news", {"title": "three"}, event="story")
                assert (await stream.events().next_event()).id == live.id

            status, answer = await get(app, "/feed?topic=bad%20topic")
            assert status == 400
            assert "topic" in json.loads(answer)["detail"]
            status, answer = await get(
                app,
                "/stories/" + "x" * 300,  # longer than a topic may be
                method="POST",
                headers=json_headers,
                body=b'{"title": "x"}',
            )
            assert status == 400
            status, _ = await get(app, "/feed")
            assert status == 422  # the required topic parameter: FastAPI's own validation
