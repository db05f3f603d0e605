"""One example served for real: uvicorn in a subprocess on a free 127.0.0.1 port, read by httpx."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssehub.protocols import TASK_PROTOCOL, ProtocolClient, TaskProgress
from ssehub.wire import EventParser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[str]:
    """Start ``examples/<name>.py`` (``custom_protocols`` unless parametrised indirectly) and
    yield its base URL once uvicorn listens."""
    name = getattr(request, "param", "custom_protocols")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        # Read uvicorn's log until it says it listens (bounded by pytest-timeout); no sleeping.
        for line in process.stderr:
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail(f"the example exited with {process.wait()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_custom_protocols_example_served_by_uvicorn(served: str) -> None:
    client = ProtocolClient(TASK_PROTOCOL)
    parser = EventParser()
    typed = []
    with (
        httpx.Client(base_url=served, timeout=10) as http,
        http.stream("GET", "/events", headers=client.request_headers()) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            for message in parser.feed(chunk):
                typed.extend(client.feed(message))
            if client.handshake is not None and len(typed) >= 3:
                break
    assert client.handshake is not None
    assert client.handshake.features == {"batching"}
    assert all(isinstance(t.payload, TaskProgress) for t in typed)
    ids = [int(t.id) for t in typed]
    assert ids == sorted(set(ids))
    # A version the server does not speak: 406 with what is available.
    with httpx.Client(base_url=served, timeout=10) as http:
        refused = http.get("/events", headers={"X-Protocol": "tasks", "X-Protocol-Version": "9"})
    assert refused.status_code == 406
    assert refused.json()["available"]["default"] == "tasks"


@pytest.mark.integration
@pytest.mark.timeout(30)
@pytest.mark.parametrize("served", ["broadcasting"], indirect=True)
def test_broadcasting_example_served_by_uvicorn(served: str) -> None:
    parser = EventParser()
    with (
        httpx.Client(base_url=served, timeout=10) as http,
        http.stream("GET", "/stream") as response,
    ):
        assert response.status_code == 200
        # The headers arrived, so the subscription exists: the broadcast reaches this client.
        sent = http.post("/send", json={"message": "hello", "event": "greeting"})
        assert sent.json()["delivered_to"] == 1
        assert http.get("/clients").json() == {"clients": 1}
        events = []
        for chunk in response.iter_bytes():
            events.extend(parser.feed(chunk))
            if events:
                break
    assert [(e.event, e.data, e.id) for e in events] == [("greeting", "hello", sent.json()["id"])]
