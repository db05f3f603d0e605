"""A subscription in the user's own generator is released when the client goes (issue 19 item 2).

``tests/integration/wrapped_app.py`` is the issue's code (``sub = broker.subscribe([...])``, a
generator doing ``async for item in sub: yield item``, ``EventSourceResponse(gen())``, no
``async with``) under a real server, as a subprocess on 127.0.0.1. The client reads an event over
a raw socket and closes the socket; then ``/status`` waits, server side, until that request has
returned and then at most ``WITHIN`` seconds for the ``on_unsubscribe`` hook: it must show the
subscription released, no subscriber left, ended with ``"abandoned"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .server_kit import RawStream, ServerProcess, bin_path, free_port

pytestmark = pytest.mark.integration

APP = "tests.integration.wrapped_app:app"
WITHIN = 1.0  # "within about a second of its response ending"
TIMEOUT = 10.0

Command = Callable[[int], list[str]]

SERVERS: dict[str, Command] = {
    "uvicorn": lambda port: [bin_path("uvicorn"), APP, "--port", str(port)],
    "hypercorn-trio": lambda port: [
        *(bin_path("hypercorn"), APP, "--bind", f"127.0.0.1:{port}"),
        *("--worker-class", "trio"),
    ],
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    port = free_port()
    process = ServerProcess(SERVERS[request.param](port), port)
    try:
        process.wait_listening()
        yield process
    finally:
        process.close()
    assert "Traceback" not in process.stderr, process.output


def status(http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get("/status", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stream_one_event_then_close_the_socket(server: ServerProcess, http: httpx.Client) -> None:
    assert status(http) == {"subscribers": 0, "ended": [], "waited": pytest.approx(0, abs=1)}
    stream = RawStream(server.port, "/feed", timeout=TIMEOUT)
    try:
        assert stream.status == 200, stream.raw
        assert status(http)["subscribers"] == 1
        assert http.post("/publish", content=b"hello").status_code == 200
        assert [event.data for event in stream.read_events(1)] == ["hello"]
    finally:
        stream.close()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    base = f"http://127.0.0.1:{server.port}"
    with httpx.Client(base_url=base, timeout=TIMEOUT, trust_env=False) as client:
        yield client


def test_released_within_a_second_of_the_disconnect(
    server: ServerProcess, http: httpx.Client
) -> None:
    stream_one_event_then_close_the_socket(server, http)
    answer = status(http, finished=1, ended=1, within=WITHIN)
    assert answer["subscribers"] == 0, answer
    assert answer["ended"] == ["abandoned"], answer


def test_released_once_the_server_collects_garbage(
    server: ServerProcess, http: httpx.Client
) -> None:
    """Whatever cycle holds the handle, the broker releases it as soon as it is collected."""
    stream_one_event_then_close_the_socket(server, http)
    answer = status(http, finished=1, collect=1, ended=1, within=WITHIN)
    assert answer["subscribers"] == 0, answer
    assert answer["ended"] == ["abandoned"], answer
