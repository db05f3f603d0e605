"""Several real hub processes on one Redis: shared topics, exact resume anywhere, ``--workers``.

Each test isolates its keys with a fresh key prefix on the shared Redis (127.0.0.1:6379) and
deletes them afterwards. Hubs are real ``ssehub serve`` processes on free loopback ports; their
readiness is the end of their startup log, read by a thread (no polling, no sleeps).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from ssehub import ConfigurationError
from ssehub.cli._supervisor import check_workers
from ssehub.hub import HubSettings
from ssehub.wire import EventParser, MessageEvent

sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))
from redis_support import REDIS_URL, RedisServer, delete_prefix, require_redis, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.redis]

TIMEOUT = 30.0  # spawning and importing a hub takes seconds on a loaded 2-core machine
GRACE = 5.0


class Hub:
    """A running ``ssehub serve`` process; ``ready`` is set when ``workers`` have logged their
    last startup line (or the process ended)."""

    def __init__(self, *args: str, workers: int = 1) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ssehub.cli", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        self.lines: list[str] = []
        self.urls: list[str] = []
        self._workers = workers
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                if "listening on http://" in line:
                    self.urls.append(line.split("listening on ", 1)[1].split()[0])
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_lines(self, text: str, count: int) -> None:
        """Wait until ``count`` log lines contain ``text`` (fail if the process ends first)."""

        def enough() -> bool:
            return self._ended or sum(text in line for line in self.lines) >= count

        with self._changed:
            assert self._changed.wait_for(enough, TIMEOUT), f"waiting for {text!r}:\n{self.log}"
            assert not self._ended or sum(text in line for line in self.lines) >= count, self.log

    def wait_ready(self) -> str:
        # "authentication is ..." is the last line of one process's startup log.
        self.wait_lines("authentication is", self._workers)
        assert len(self.urls) == self._workers, f"the hub did not start:\n{self.log}"
        return self.urls[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(TIMEOUT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def broker_url() -> Iterator[str]:
    """The shared Redis, with a key prefix of this test's own."""
    require_redis()
    prefix = unique_prefix()
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        delete_prefix(prefix)


@contextmanager
def hubs(*arg_lists: list[str], workers: int = 1) -> Iterator[list[Hub]]:
    """Start one hub per argument list at once (they import in parallel), then wait for all."""
    with ExitStack() as stack:
        started = []
        for args in arg_lists:
            hub = Hub(*args, workers=workers)
            stack.callback(hub.close)
            started.append(hub)
        for hub in started:
            hub.wait_ready()
        yield started


class Reader:
    """Parses one open event stream; :meth:`read` can be called again for later events."""

    def __init__(self, response: httpx.Response, last_event_id: str = "") -> None:
        self._chunks = response.iter_raw()
        self._parser = EventParser(last_event_id=last_event_id)

    def read(self, count: int) -> list[MessageEvent]:
        """Read until ``count`` events arrived; return every event parsed (a chunk may complete
        more than ``count``: those reached the client too)."""
        events: list[MessageEvent] = []
        for chunk in self._chunks:
            events.extend(self._parser.feed(chunk))
            if len(events) >= count:
                return events
        raise AssertionError(f"the stream ended after {len(events)} of {count} events")

    def rest(self) -> bytes:
        """Read to the end of the body (which the server must end)."""
        return b"".join(self._chunks)


def publish(client: httpx.Client, topics: list[str], data: str) -> str:
    response = client.post("/publish", json={"topics": topics, "data": data})
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


def test_hubs_share_topics_and_a_client_resumes_exactly_on_another_hub(broker_url: str) -> None:
    common = ["--broker", broker_url, "--grace-period", str(GRACE)]
    with hubs(["--port", "0", *common], ["--port", "0", *common]) as (hub_a, hub_b):
        url_a, url_b = hub_a.wait_ready(), hub_b.wait_ready()
        topics = {"topic": ["orders", "audit"]}
        # Every event goes to one topic or both, so the multi-topic merge and dedup are used.
        plan = [["orders"], ["audit"], ["orders", "audit"]]
        sent: list[tuple[str, str]] = []
        with httpx.Client(base_url=url_a, timeout=TIMEOUT) as on_a:
            with (
                httpx.Client(base_url=url_b, timeout=TIMEOUT) as on_b,
                on_b.stream("GET", "/events", params=topics) as stream,
            ):
                assert stream.status_code == 200  # headers sent: the subscription exists
                sent += [(publish(on_a, plan[n % 3], f"e{n}"), f"e{n}") for n in range(20)]
                seen = Reader(stream).read(8)
            assert [(e.id, e.data) for e in seen] == sent[: len(seen)]
            hub_b.process.kill()  # the client is cut off from B for good
            sent += [(publish(on_a, plan[n % 3], f"e{n}"), f"e{n}") for n in range(20, 30)]

            # Reconnect to A, which never saw this client, with the last id it received.
            headers = {"Last-Event-ID": seen[-1].id}
            with on_a.stream("GET", "/events", params=topics, headers=headers) as stream:
                assert "ssehub-reset" not in stream.headers
                reader = Reader(stream, last_event_id=seen[-1].id)
                missed = len(sent) - len(seen)
                rest = reader.read(missed)
                assert len(rest) == missed  # nothing else is published yet: more is a duplicate
                # The next event after the replay is the next live one.
                end = publish(on_a, ["audit"], "end")
                rest += reader.read(1)
            got = [(e.id, e.data) for e in seen + rest]
            assert got == [*sent, (end, "end")]
            ids = [event_id for event_id, _ in got]
            assert len(set(ids)) == len(ids)
        assert hub_a.stop() == 0, hub_a.log


def test_two_workers_serve_one_port_and_stop_cleanly(broker_url: str) -> None:
    args = [
        "--workers",
        "2",
        "--no-channels",
        "--port",
        "0",
        "--broker",
        broker_url,
        "--grace-period",
        str(GRACE),
    ]
    with hubs(args, workers=2) as (hub,):
        url = hub.wait_ready()
        assert len(set(hub.urls)) == 1, hub.urls  # both workers on the supervisor's socket
        subscribers = 6  # the kernel spreads these over both workers' accept calls
        with ExitStack() as stack:
            clients = [stack.enter_context(httpx.Client(base_url=url, timeout=TIMEOUT))]
            readers = []
            for _ in range(subscribers):
                client = stack.enter_context(httpx.Client(base_url=url, timeout=TIMEOUT))
                stream = stack.enter_context(client.stream("GET", "/events?topic=news"))
                assert stream.status_code == 200
                readers.append(Reader(stream))
            event_id = publish(clients[0], ["news"], "hello")
            for reader in readers:
                (event,) = reader.read(1)
                assert (event.id, event.data) == (event_id, "hello")
            assert clients[0].get("/health").json() == {"status": "ok"}
            code = hub.stop()
            for reader in readers:  # drained by their worker: a clean end of body, no error
                reader.rest()
        assert code == 0, hub.log
        assert "did not stop in time" not in hub.log


def test_workers_refuse_the_memory_broker() -> None:
    hub = Hub("--workers", "2", "--port", "0", "--broker", "memory://")
    try:
        assert hub.process.wait(TIMEOUT) == 2
        hub._reader.join(TIMEOUT)
        assert "needs a shared broker such as redis://" in hub.log
    finally:
        hub.close()


def test_a_dead_worker_is_replaced(broker_url: str) -> None:
    args = [
        "--workers",
        "2",
        "--no-channels",
        "--port",
        "0",
        "--broker",
        broker_url,
        "--grace-period",
        str(GRACE),
    ]
    with hubs(args, workers=2) as (hub,):
        url = hub.wait_ready()
        (line,) = [line for line in hub.lines if "2 workers [" in line]
        pids = [int(pid) for pid in line.split("[")[-1].split("]")[0].split(",")]
        os.kill(pids[0], signal.SIGKILL)
        hub.wait_lines("starting a new one", 1)
        hub.wait_lines("authentication is", 3)  # the replacement has started
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            for _ in range(4):  # whichever worker answers, it is serving
                assert client.get("/health").json() == {"status": "ok"}
        assert hub.stop() == 0, hub.log


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "at least 1"),
        ({"workers": 2}, "needs a shared broker"),
        ({"workers": 2, "broker": "redis://h/0", "socket": "/tmp/x.sock"}, "--socket"),
        ({"workers": 2, "broker": "redis://h/0", "ingest_port": 0}, "--ingest-port"),
    ],
)
def test_worker_settings_are_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_workers(HubSettings(**changes))  # type: ignore[arg-type]
    check_workers(HubSettings(workers=3, broker="rediss://h:6380/1"))  # accepted


def test_streams_stay_open_through_a_redis_restart(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        args = ["--port", "0", "--broker", redis_server.url, "--grace-period", str(GRACE)]
        with hubs(args) as (hub,), httpx.Client(base_url=hub.wait_ready(), timeout=TIMEOUT) as http:
            with http.stream("GET", "/events", params={"topic": "t"}) as stream:
                reader = Reader(stream)
                first = publish(http, ["t"], "before")
                assert [(e.id, e.data) for e in reader.read(1)] == [(first, "before")]
                redis_server.stop(save=True)
                down = http.post("/publish", json={"topic": "t", "data": "while down"})
                assert (down.status_code, down.json()["error"]) == (503, "unavailable")
                assert http.get("/health").json() == {"status": "degraded"}
                redis_server.start()
                # The same stream, still open, gets what is published once Redis is back.
                second = publish(http, ["t"], "after")
                assert [(e.id, e.data) for e in reader.read(1)] == [(second, "after")]
            assert hub.stop() == 0, hub.log
    finally:
        redis_server.kill()
