"""``ssehub serve --socket ... --ingest-port ...`` as a real process: channels over HTTP and ingest.

The server's log is read by a thread; readiness is the end of its startup log (no polling, no
sleeps). httpx's sync client reads the listener's stream line by line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

import httpx
import pytest

from ssehub._exceptions import IngestError
from ssehub.channels import IngestClient
from ssehub.wire import EventParser, MessageEvent

pytestmark = pytest.mark.integration

TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """A running ``ssehub serve`` whose log is collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ssehub.cli", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on http://" in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
            if "authentication is" in line:  # the last line of the startup log
                self.ready.set()
        self.ready.set()

    def wait_ready(self) -> str:
        assert self.ready.wait(TIMEOUT), "the server did not start in time"
        assert self.url, "".join(self.lines)
        return self.url


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="ssehub-", dir="/tmp")  # Unix socket paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_events(response: httpx.Response, count: int) -> list[MessageEvent]:
    parser = EventParser()
    events: list[MessageEvent] = []
    for chunk in response.iter_bytes():
        events += parser.feed(chunk)
        if len(events) >= count:
            break
    return events


def test_channels_and_ingest_under_ssehub_serve(socket_dir: str) -> None:
    path = os.path.join(socket_dir, "ingest.sock")
    port = free_port()
    served = Served(["--port", "0", "--socket", path, "--ingest-port", str(port)])
    try:
        url = served.wait_ready()
        log = "".join(served.lines)
        assert f"unix:{path}" in log
        assert f"tcp:127.0.0.1:{port}" in log
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
        with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
            assert http.post("/channels", json={"name": "jobs"}).status_code == 200
            listener = http.post("/channels/jobs/listeners", json={"id": "w1"}).json()
            with http.stream("GET", listener["events"]) as response:
                assert response.status_code == 200
                with (
                    IngestClient(path) as unix,
                    IngestClient(f"tcp://127.0.0.1:{port}") as tcp,
                ):
                    first = unix.send({"command": "broadcast", "channel": "jobs", "payload": 1})
                    second = tcp.send(
                        {"command": "dispatch", "channel": "jobs", "listener": "w1", "payload": 2}
                    )
                    with pytest.raises(IngestError) as info:
                        tcp.send({"command": "dispatch", "channel": "jobs", "listener": "nope"})
                    assert info.value.code == "unknown_listener"
                    tcp.send(
                        {
                            "command": "dispatch",
                            "channel": "jobs",
                            "listener": "w1",
                            "type": "ssehub.end",
                        }
                    )
                events = read_events(response, 3)
            assert [(e.data, e.id) for e in events[:2]] == [("1", first["id"]), ("2", second["id"])]
            assert events[2].event == "ssehub.end"
    finally:
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(TIMEOUT)
        served.reader.join(TIMEOUT)
        assert served.process.stderr is not None
        served.process.stderr.close()
    assert code == 0, "".join(served.lines)
    assert not os.path.exists(path)
