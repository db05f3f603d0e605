"""FastAPI's SSE idiom on ssehub under a real uvicorn (``uvicorn module:app``, as a user runs it).

``tests/integration/fastapi_app.py`` is served on a loopback port and read over a raw socket, so
a clean end of the body (the chunked terminator) is told apart from a cut connection: streams
that end, a client that goes away (the path operation's ``finally`` runs), ``Last-Event-ID``
resume through a broker subscription, the OpenAPI document, and Ctrl-C with a stream open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .server_kit import RawStream, ServerProcess, uvicorn_app

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
APP = "tests.integration.fastapi_app:app"


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with uvicorn_app(APP, "--http", request.param) as process:
        yield process


def url(server: ServerProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_streams_end_cleanly_and_disconnects_run_finally(server: ServerProcess) -> None:
    stream = RawStream(server.port, "/ticks?count=3", timeout=TIMEOUT)
    try:
        end = stream.read_to_end(time.monotonic() + TIMEOUT)
    finally:
        stream.close()
    assert end.how == "terminator", end
    assert stream.status == 200
    assert stream.response_headers["content-type"] == "text/event-stream; charset=utf-8"
    assert [(e.event, e.data) for e in stream.events] == [
        ("message", '{"n":0}'),
        ("message", '{"n":1}'),
        ("message", '{"n":2}'),
        ("end", "bye"),
    ]

    stream = RawStream(server.port, "/forever", timeout=TIMEOUT)
    try:
        assert [e.data for e in stream.read_events(1)] == ['{"n":0}']
    finally:
        stream.close()  # the client goes away while the path operation waits
    answer = httpx.get(url(server, "/closed?at_least=1"), timeout=TIMEOUT, trust_env=False)
    assert answer.json() == {"closed": 1}


def test_resume_openapi_and_ctrl_c(server: ServerProcess) -> None:
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        ids = [
            client.post(url(server, "/stories/news"), json={"title": title}).json()["id"]
            for title in ("one", "two", "three")
        ]
        assert client.get(url(server, "/feed?topic=bad%20topic")).status_code == 400
        schema = client.get(url(server, "/openapi.json")).json()
    content = schema["paths"]["/ticks"]["get"]["responses"]["200"]["content"]
    item = content["text/event-stream"]["itemSchema"]
    assert item["properties"]["data"]["contentSchema"]["properties"] == {
        "n": {"title": "N", "type": "integer"}
    }

    stream = RawStream(
        server.port, "/feed?topic=news", headers={"Last-Event-ID": ids[0]}, timeout=TIMEOUT
    )
    try:
        events = stream.read_events(2)
        assert [(e.id, e.event, e.data) for e in events] == [
            (ids[1], "story", '{"title":"two"}'),
            (ids[2], "story", '{"title":"three"}'),
        ]
        server.interrupt()  # Ctrl-C with the stream open: it ends cleanly, the server exits
        end = stream.read_to_end(time.monotonic() + TIMEOUT)
    finally:
        stream.close()
    assert end.how == "terminator", end
    assert server.wait_exit(TIMEOUT) == 0, server.output
    assert "Traceback" not in server.stderr, server.output
