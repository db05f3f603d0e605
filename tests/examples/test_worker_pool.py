"""examples/worker_pool.py: jobs dispatched to callback listeners in a thread pool."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio
import httpx
import pytest

from ssehub.testing import stream_asgi

pytestmark = pytest.mark.anyio


def expected_digest(text: str, rounds: int) -> str:
    digest = text.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


async def _request(app: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        content = None if body is None else json.dumps(body).encode()
        return await client.request(method, path, content=content)


async def test_jobs_are_processed_by_the_pool(
    example: Any, run_lifespan: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ssehub.channels")
    app = example("worker_pool").create_app(workers=3)
    jobs = [{"text": "bad", "rounds": -1}] + [
        {"text": f"t{n}", "rounds": 100 * (n + 1)} for n in range(5)
    ]
    with anyio.fail_after(20):
        async with run_lifespan(app), stream_asgi(app, "/results") as results:
            await results.start()
            answer = await _request(app, "POST", "/jobs", {"jobs": jobs})
            assert answer.status_code == 200
            queued = answer.json()["queued"]
            assert [q["job"] for q in queued] == [1, 2, 3, 4, 5, 6]
            # Round-robin over the three workers.
            assert [q["worker"] for q in queued] == ["worker-2", "worker-3", "worker-1"] * 2
            events = await results.events().take(5)
            state = app.state.workers
            for handle in state["handles"]:
                handle.listener.stop()  # ends each worker after what is queued
                await handle.wait()
            stats = (await _request(app, "GET", "/stats")).json()
    got = {json.loads(e.data)["job"]: json.loads(e.data) for e in events}
    assert sorted(got) == [2, 3, 4, 5, 6]
    for n in range(5):
        assert got[n + 2]["sha256"] == expected_digest(f"t{n}", 100 * (n + 1))
    assert {e.event for e in events} == {"result"}
    assert stats["total"] == {"processed": 5, "failed": 1, "dropped": 0, "in_flight": 0}
    assert stats["workers"]["worker-2"]["failed"] == 1
    assert any("failed on message" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"{}",
        b'{"jobs": []}',
        b'{"jobs": [1]}',
        b'{"jobs": "x"}',
        b'{"jobs": ' + b"[" * 60_000 + b"}",  # deeper than Python's recursion limit
        b"\xff\xfe",  # not UTF-8
        b'{"jobs": [{"text": "ok"}, {"text": "\\ud800"}]}',  # a lone surrogate is not text
    ],
)
async def test_bad_requests_get_a_400(example: Any, run_lifespan: Any, body: bytes) -> None:
    app = example("worker_pool").create_app()
    with anyio.fail_after(10):
        async with run_lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
                response = await client.post("/jobs", content=body)
    assert response.status_code == 400
    assert "error" in response.json()
