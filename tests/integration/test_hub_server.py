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

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ssehub.cli", "serve", *args],
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


@contextmanager
def hub_process(*args: str, env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    hub = HubProcess(list(args), env or {})
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
