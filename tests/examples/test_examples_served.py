"""Every example served for real: a process per example on a free 127.0.0.1 port, read by httpx.

The in-process tests next to this file check each example's behaviour in detail; this layer checks
that each one is a runnable program (``python examples/<name>.py --port N``) whose stream reaches a
real streaming client over a real socket. All examples start at once, in parallel, when the first
test needs one (module scope), so the layer costs one start-up, not seven; readiness is read from
uvicorn's log (no sleeping), and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ssehub.protocols import TASK_PROTOCOL, ProtocolClient, TaskProgress, TaskState
from ssehub.wire import EventParser, MessageEvent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = (
    "broadcasting",
    "custom_protocols",
    "database_stream",
    "fastapi_app",
    "memory_channel",
    "task_progress",
    "worker_pool",
)
START_TIMEOUT = 45.0  # seconds for all of them together (imports on a busy 2-core machine)
HTTP_TIMEOUT = 10.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_every_example_is_served_here() -> None:
    # A new example must join this layer: it is a runnable program with a served test.
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(NAMES)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open together, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Served:
    """One example process and what its log said."""

    name: str
    url: str
    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)
    log: list[str] = field(default_factory=list)

    def drain(self) -> None:
        """Read the log to the end (in a thread): readiness, and a full pipe never blocks it."""
        assert self.process.stderr is not None
        try:
            for line in self.process.stderr:
                self.log.append(line)
                if "Uvicorn running on" in line:
                    self.ready.set()
        finally:
            self.ready.set()  # EOF: wake the waiter, which then sees the process is not serving


def reap(process: subprocess.Popen[str]) -> None:
    """Wait for a terminated process; kill it if it does not exit within 10 s."""
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start every example in parallel; yield ``{name: base URL}`` once all of them listen."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'messages.db'}",
    }
    started: list[Served] = []
    threads: list[threading.Thread] = []
    try:
        for name, port in zip(NAMES, free_ports(len(NAMES)), strict=True):
            process = subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            served = Served(name, f"http://127.0.0.1:{port}", process)
            started.append(served)
            thread = threading.Thread(target=served.drain, name=f"log-{name}", daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + START_TIMEOUT
        for served in started:
            served.ready.wait(max(0.0, deadline - time.monotonic()))
            if not any("Uvicorn running on" in line for line in served.log):
                pytest.fail(
                    f"examples/{served.name}.py did not start (exit code "
                    f"{served.process.poll()}):\n{''.join(served.log)[-3000:]}"
                )
        yield {served.name: served.url for served in started}
    finally:
        for served in started:
            served.process.terminate()
        for served in started:
            reap(served.process)
        for thread in threads:
            thread.join(timeout=10)
        for served in started:
            if served.process.stderr is not None:
                served.process.stderr.close()


def read_events(response: httpx.Response, count: int | None = None) -> list[MessageEvent]:
    """Parse ``response``'s body as it streams: the first ``count`` events, or all of them."""
    parser = EventParser()
    events: list[MessageEvent] = []
    for chunk in response.iter_bytes():
        events.extend(parser.feed(chunk))
        if count is not None and len(events) >= count:
            return events[:count]
    return events


def test_custom_protocols_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    client = ProtocolClient(TASK_PROTOCOL)
    parser = EventParser()
    typed = []
    with (
        httpx.Client(base_url=servers["custom_protocols"], timeout=HTTP_TIMEOUT) as http,
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
    # Resuming from an id the server sent: only later changes come.
    resumed = ProtocolClient(TASK_PROTOCOL, last_event_id=typed[-1].id)
    with (
        httpx.Client(base_url=servers["custom_protocols"], timeout=HTTP_TIMEOUT) as http,
        http.stream("GET", "/events", headers=resumed.request_headers()) as response,
    ):
        later: list[Any] = []
        parser = EventParser()
        for chunk in response.iter_bytes():
            for message in parser.feed(chunk):
                later.extend(resumed.feed(message))
            if later:
                break
    assert int(later[0].id) > ids[-1]
    # A version the server does not speak: 406 with what is available.
    with httpx.Client(base_url=servers["custom_protocols"], timeout=HTTP_TIMEOUT) as http:
        refused = http.get("/events", headers={"X-Protocol": "tasks", "X-Protocol-Version": "9"})
    assert refused.status_code == 406
    assert refused.json()["available"]["default"] == "tasks"


def test_broadcasting_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    with (
        httpx.Client(base_url=servers["broadcasting"], timeout=HTTP_TIMEOUT) as http,
        http.stream("GET", "/stream") as response,
    ):
        assert response.status_code == 200
        # The headers arrived, so the subscription exists: the broadcast reaches this client.
        sent = http.post("/send", json={"message": "hello", "event": "greeting"})
        assert sent.json()["delivered_to"] == 1
        assert http.get("/clients").json() == {"clients": 1}
        events = read_events(response, 1)
    assert [(e.event, e.data, e.id) for e in events] == [("greeting", "hello", sent.json()["id"])]


def test_task_progress_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    with httpx.Client(base_url=servers["task_progress"], timeout=HTTP_TIMEOUT) as http:
        started = http.post("/tasks", params={"steps": 4, "delay": 0})
        assert started.status_code == 202
        path = started.json()["events"]
        with http.stream("GET", path) as response:
            assert response.status_code == 200
            events = read_events(response)  # the stream ends after the final state
        states = [TASK_PROTOCOL.decode(e).payload for e in events]
        assert states[-1].state is TaskState.COMPLETED
        assert [s.seq for s in states] == sorted({s.seq for s in states})
        # Reconnecting after the end: 204 tells EventSource to stop.
        again = http.get(path, headers={"Last-Event-ID": events[-1].id or ""})
        assert again.status_code == 204


# The payloads are checked as JSON, not decoded with the examples' typed protocols: importing
# SQLAlchemy or FastAPI into the test process would cost more than the whole served check.


def test_database_stream_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    with httpx.Client(base_url=servers["database_stream"], timeout=HTTP_TIMEOUT) as http:
        stored = http.post("/messages", json={"text": "hello ünïcode"})
        assert stored.status_code == 201
        row_id = stored.json()["id"]
        with http.stream("GET", "/stream", headers={"Last-Event-ID": str(row_id - 1)}) as response:
            assert response.status_code == 200
            [event] = read_events(response, 1)
        assert (event.event, event.id) == ("message.created", str(row_id))
        assert json.loads(event.data) == {"id": row_id, "text": "hello ünïcode"}
        # The raw header byte 0xB2 ("²" once decoded as Latin-1): refused before answering,
        # not a 200 and a crash in the generator.
        refused = http.get("/stream", headers={"Last-Event-ID": b"\xb2"})
        assert refused.status_code == 400


def test_memory_channel_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    with (
        httpx.Client(base_url=servers["memory_channel"], timeout=HTTP_TIMEOUT) as http,
        http.stream("GET", "/events", params={"count": 3, "delay": 0}) as response,
    ):
        assert response.status_code == 200
        events = read_events(response)  # the producer closes the channel: the stream ends
    assert [(e.event, e.data, e.id) for e in events] == [
        ("item", f"item {n}", str(n)) for n in (1, 2, 3)
    ]


def test_fastapi_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    with httpx.Client(base_url=servers["fastapi_app"], timeout=HTTP_TIMEOUT) as http:
        params = {"count": 3, "interval": 0, "symbol": "XYZ"}
        headers = {"X-Protocol-Version": "1"}
        with http.stream("GET", "/prices", params=params, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response)
        assert events[0].event == "protocol.handshake"
        assert {e.event for e in events[1:]} == {"price"}
        ticks = [(json.loads(e.data), e.id) for e in events[1:]]
        assert [(t["symbol"], t["sequence"], i) for t, i in ticks] == [
            ("XYZ", n, str(n)) for n in (1, 2, 3)
        ]
        assert all(t["price"] > 0 for t, _ in ticks)
        refused = http.get("/prices", headers={"X-Protocol-Version": "9"})
        assert refused.status_code == 406
        assert http.get("/health").json() == {"status": "ok"}


def test_worker_pool_example_served_by_uvicorn(servers: dict[str, str]) -> None:
    def digest(text: str, rounds: int) -> str:
        value = text.encode()
        for _ in range(rounds):
            value = hashlib.sha256(value).digest()
        return value.hex()

    with (
        httpx.Client(base_url=servers["worker_pool"], timeout=HTTP_TIMEOUT) as http,
        http.stream("GET", "/results") as response,
    ):
        assert response.status_code == 200
        # The headers arrived, so the subscription exists: the results reach this client.
        jobs = [{"text": "hello", "rounds": 10}, {"text": "world", "rounds": 20}]
        queued = http.post("/jobs", json={"jobs": jobs})
        assert queued.status_code == 200
        events = read_events(response, 2)
    results = {json.loads(e.data)["text"]: json.loads(e.data) for e in events}
    assert {e.event for e in events} == {"result"}
    assert results["hello"]["sha256"] == digest("hello", 10)
    assert results["world"]["sha256"] == digest("world", 20)
