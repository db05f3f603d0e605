"""``ssehub serve`` as a real process on 127.0.0.1, driven by a real streaming httpx client.

The server's log is read by a thread; readiness is the end of its startup log (no polling of the
port, no sleeps). Tests are plain functions: the server is another process, and httpx's sync
client reads its streams line by line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ssehub.wire import EventParser, MessageEvent

pytestmark = pytest.mark.integration

TIMEOUT = 15.0
GRACE = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HubProcess:
    """A running ``ssehub serve`` and its collected log."""

    def __init__(self, args: list[str], env: dict[str, str], command: list[str]) -> None:
        self.process = subprocess.Popen(
            [*command, "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on http://" in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
            if "authentication is" in line:  # the last line of the startup log
                self.ready.set()
        self.ready.set()  # the process ended: let a waiting test fail with the log

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> str:
        assert self.ready.wait(TIMEOUT), "the server did not start in time"
        assert self.url, f"the server did not start:\n{self.log}"
        return self.url

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(TIMEOUT)


PYTHON_M = [sys.executable, "-m", "ssehub.cli"]
# The console script installed next to this interpreter: exactly what `uv run ssehub` runs.
CONSOLE_SCRIPT = [str(Path(sys.executable).with_name("ssehub"))]


@contextmanager
def hub_process(
    *args: str, env: dict[str, str] | None = None, command: list[str] = PYTHON_M
) -> Iterator[HubProcess]:
    hub = HubProcess(list(args), env or {}, command)
    try:
        yield hub
    finally:
        if hub.process.poll() is None:
            hub.process.kill()
            hub.process.wait(TIMEOUT)
        hub._reader.join(TIMEOUT)
        if hub.process.stderr is not None:
            hub.process.stderr.close()


def read_events(response: httpx.Response, count: int) -> list[MessageEvent]:
    parser = EventParser()
    events: list[MessageEvent] = []
    for chunk in response.iter_raw():
        events.extend(parser.feed(chunk))
        if len(events) >= count:
            break
    assert len(events) == count
    return events


def test_subscribe_publish_receive() -> None:
    port = free_port()
    with hub_process("--port", str(port), "--grace-period", str(GRACE)) as hub:
        url = hub.wait_ready()
        assert url == f"http://127.0.0.1:{port}"
        assert "authentication is OFF" in hub.log
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            assert client.get("/health").json() == {"status": "ok"}
            with client.stream("GET", "/events", params={"topic": "orders"}) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                one = client.post("/publish", json={"topic": "orders", "data": {"n": 1}}).json()
                batch = client.post(
                    "/publish",
                    json=[
                        {"topic": "orders", "data": "two\nlines", "event": "note"},
                        {"topic": "other", "data": "not for us"},
                        {"topic": "orders", "data": "three"},
                    ],
                ).json()["events"]
                events = read_events(stream, 3)
            assert [(e.id, e.event, e.data) for e in events] == [
                (one["id"], "message", '{"n":1}'),
                (batch[0]["id"], "note", "two\nlines"),
                (batch[2]["id"], "message", "three"),
            ]
            status = client.get("/status").json()
            assert status["totals"]["published"] == 4
            error = client.post("/publish", json={"topic": "bad topic", "data": 1})
            assert (error.status_code, error.json()["error"]) == (400, "invalid_topic")
            assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
        assert hub.stop() == 0


def test_exact_resume_and_reset_over_real_http() -> None:
    port = free_port()
    env = {"SSEHUB_PORT": str(port), "SSEHUB_HISTORY": "20"}
    with hub_process(env=env) as hub:
        url = hub.wait_ready()
        assert url.endswith(f":{port}")  # the port came from the environment
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            with client.stream("GET", "/events", params={"topic": "feed"}) as stream:
                ids = [
                    client.post("/publish", json={"topic": "feed", "data": str(n)}).json()["id"]
                    for n in range(1, 11)
                ]
                seen = read_events(stream, 4)
            assert [e.data for e in seen] == ["1", "2", "3", "4"]
            headers = {"Last-Event-ID": seen[-1].id}
            with client.stream("GET", "/events", params={"topic": "feed"}, headers=headers) as s:
                assert "ssehub-reset" not in s.headers
                resumed = read_events(s, 6)
            assert [e.id for e in resumed] == ids[4:]
            # More events than the history holds: an honest reset, then live.
            for n in range(30):
                client.post("/publish", json={"topic": "feed", "data": f"x{n}"})
            with client.stream("GET", "/events", params={"topic": "feed"}, headers=headers) as s:
                assert s.headers["ssehub-reset"] == "expired"
                (reset,) = read_events(s, 1)
                assert reset.event == "ssehub.reset"
        assert hub.stop(signal.SIGINT) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_with_open_streams(sig: int) -> None:
    port = free_port()
    with hub_process("--port", str(port), "--grace-period", str(GRACE)) as hub:
        url = hub.wait_ready()
        results: list[str] = []
        opened = threading.Barrier(4)

        def listen() -> None:
            with (
                httpx.Client(base_url=url, timeout=TIMEOUT) as client,
                client.stream("GET", "/events", params={"topic": "t"}) as stream,
            ):
                chunks = stream.iter_raw()
                next(chunks)  # the opening comment: the stream is established
                opened.wait(TIMEOUT)
                try:
                    rest = b"".join(chunks)  # ends only when the server ends the body
                except httpx.HTTPError as exc:
                    results.append(f"error: {exc!r}")
                else:
                    results.append(f"clean end ({len(rest)} bytes)")

        threads = [threading.Thread(target=listen) for _ in range(3)]
        for thread in threads:
            thread.start()
        opened.wait(TIMEOUT)
        started = time.monotonic()
        code = hub.stop(sig)
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(TIMEOUT)
        assert code == 0, hub.log
        assert elapsed < GRACE, f"shutdown took {elapsed:.1f} s:\n{hub.log}"
        assert len(results) == 3
        assert all(result.startswith("clean end") for result in results), results
        assert "Cancel" not in hub.log  # nothing had to be cancelled after the grace period


def test_port_in_use_fails_to_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with hub_process("--port", str(port)) as hub:
            assert hub.process.wait(TIMEOUT) == 1
            hub._reader.join(TIMEOUT)
            assert "address already in use" in hub.log.lower() or "errno" in hub.log.lower()


def test_invalid_settings_exit_2() -> None:
    with hub_process(env={"SSEHUB_SLOW_POLICY": "yolo"}) as hub:
        assert hub.process.wait(TIMEOUT) == 2
        hub._reader.join(TIMEOUT)
        assert "SSEHUB_SLOW_POLICY" in hub.log


def test_console_script_on_port_zero_runs_uvloop_and_httptools() -> None:
    # `ssehub serve --port 0`: the OS picks the port, the log names the real one.
    assert Path(CONSOLE_SCRIPT[0]).exists()
    with hub_process("--port", "0", command=CONSOLE_SCRIPT) as hub:
        url = hub.wait_ready()
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        assert "event loop uvloop, HTTP parser httptools" in hub.log
        assert "is not available" not in hub.log  # no fallback was taken
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            assert client.get("/health").status_code == 200
            head = client.head("/events", params={"topic": "t"})
            assert head.status_code == 200
            assert head.headers["content-type"].startswith("text/event-stream")
            assert head.content == b""
        assert hub.stop() == 0


def test_every_issue_option_from_the_environment() -> None:
    # Each option of `ssehub serve` read from SSEHUB_<NAME> only (the server starts, so all
    # parsed), and seen in effect where HTTP shows it; that queue size and slow policy reach
    # the broker is checked in tests/hub/test_hub_http.py.
    env = {
        "SSEHUB_HOST": "127.0.0.1",
        "SSEHUB_PORT": "0",
        "SSEHUB_BROKER": "memory://",
        "SSEHUB_HISTORY": "3",
        "SSEHUB_HISTORY_TTL": "600",
        "SSEHUB_PING": "0.2",
        "SSEHUB_MAX_CONNECTION_AGE": "1",
        "SSEHUB_QUEUE_SIZE": "5",
        "SSEHUB_SLOW_POLICY": "drop_oldest",
        "SSEHUB_GRACE_PERIOD": "3",
    }
    with hub_process(env=env) as hub:
        url = hub.wait_ready()
        assert "broker memory://, history 3 events per topic, ping 0.2 s" in hub.log
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            first = client.post("/publish", json={"topic": "t", "data": "0"}).json()["id"]
            for n in range(1, 6):
                client.post("/publish", json={"topic": "t", "data": str(n)})
            assert client.get("/status").json()["topics"]["t"]["history"] == 3  # HISTORY
            headers = {"Last-Event-ID": first}
            started = time.monotonic()
            with client.stream("GET", "/events", params={"topic": "t"}, headers=headers) as s:
                assert s.headers["ssehub-reset"] == "expired"  # the history holds only 3
                # PING: comments arrive while idle; MAX_CONNECTION_AGE: the server ends the
                # stream (0.8 to 1 s, with jitter) and the read below returns.
                body = b"".join(s.iter_raw())
            elapsed = time.monotonic() - started
        assert b"event: ssehub.reset" in body
        assert body.count(b": ping") >= 2
        assert 0.7 <= elapsed < 5, elapsed
        assert hub.stop() == 0
