"""HTTP limits of ``ssehub serve`` (issue 18 item 2), attacked with raw sockets on 127.0.0.1.

Every test runs against a real ``ssehub serve`` process, once with ``--http httptools`` and once
with ``--http h11``. Short timeouts (2 s) keep the suite fast; one test checks the documented
defaults end to end. Closes are observed with socket timeouts under deadlines, never by sleeping:
pacing a slow client is a ``recv`` that must time out because the server has to stay silent.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .server_kit import RawStream
from .test_hub_server import HubProcess, free_port, hub_process

pytestmark = pytest.mark.integration

PARSERS = ["httptools", "h11"]
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 1
SHORT = (
    "--header-timeout",
    str(HEADER_TIMEOUT),
    "--body-timeout",
    str(BODY_TIMEOUT),
    "--keep-alive-timeout",
    str(KEEP_ALIVE),
)
SLACK = 3.0  # scheduling slack on a loaded 2-core machine
MIB = 1024 * 1024
BODY = b'{"topic": "limits", "data": "x"}'


@dataclass
class Hub:
    port: int
    process: HubProcess

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


@contextmanager
def serving(http: str, *args: str, command: list[str] | None = None) -> Iterator[Hub]:
    port = free_port()
    extra = {"command": command} if command else {}
    with hub_process("--port", str(port), "--http", http, *args, **extra) as process:
        process.wait_ready()
        assert f"HTTP parser {http}" in process.log, process.log
        assert "HTTP limits" not in process.log, process.log  # no fallback to plain uvicorn
        yield Hub(port, process)


@pytest.fixture(scope="module", params=PARSERS)
def hub(request: pytest.FixtureRequest) -> Iterator[Hub]:
    with serving(request.param, *SHORT) as running:
        yield running


@dataclass
class Ending:
    """What a client saw: the bytes received, how the connection ended, and after how long."""

    data: bytes
    how: str  # "eof", "reset" or "timeout" (still open at the deadline)
    after: float

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])


def read_until_closed(sock: socket.socket, timeout: float, started: float | None = None) -> Ending:
    """Read until the server closes the connection or ``timeout`` seconds pass."""
    started = time.monotonic() if started is None else started
    deadline = started + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return Ending(data, "timeout", time.monotonic() - started)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return Ending(data, "timeout", time.monotonic() - started)
        except ConnectionResetError:
            return Ending(data, "reset", time.monotonic() - started)
        if not chunk:
            return Ending(data, "eof", time.monotonic() - started)
        data += chunk


def send_all(sock: socket.socket, data: bytes) -> bool:
    """``sendall``; ``False`` when the server closed or reset the connection meanwhile."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def exchange(hub: Hub, request: bytes, timeout: float = 10.0) -> Ending:
    with hub.connect() as sock:
        send_all(sock, request)
        return read_until_closed(sock, timeout)


def get(path: str = "/health", headers: bytes = b"") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + headers
        + b"Connection: close\r\n\r\n"
    )


def refused(ending: Ending) -> bool:
    """431 and a close, or only a close/reset: never an answer from the application."""
    return ending.how in ("eof", "reset") and ending.status in (431, None)


def test_a_head_within_the_limits_is_served(hub: Hub) -> None:
    big = b"X-Big: " + b"a" * (30 * 1024) + b"\r\n"  # under the 32 KiB default
    many = b"".join(b"X-H%d: 1\r\n" % n for n in range(97))  # 97 + Host + Connection = 99
    for headers in (big, many):
        ending = exchange(hub, get(headers=headers))
        assert ending.status == 200, ending


def test_a_1_mib_header_gets_431(hub: Hub) -> None:
    ending = exchange(hub, get(headers=b"X-Big: " + b"a" * MIB + b"\r\n"))
    assert refused(ending), ending
    assert ending.status == 431, ending  # the guard answers before it closes


@pytest.mark.parametrize("count", [101, 10_000])
def test_too_many_headers_get_431(hub: Hub, count: int) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % n for n in range(count))
    ending = exchange(hub, get(headers=headers))
    assert refused(ending), ending
    assert ending.status == 431, ending


def vm(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("http", PARSERS)
def test_a_64_mib_unterminated_header_is_cut_off_without_memory_growth(http: str) -> None:
    with serving(http) as running:  # a process of its own: its peak RSS is this test's
        pid = running.process.process.pid
        assert exchange(running, get()).status == 200  # warm: first request allocations
        before = vm(pid, "VmRSS")
        piece = b"a" * (256 * 1024)
        sent = 0
        with running.connect() as sock:
            send_all(sock, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
            while sent < 64 * MIB and send_all(sock, piece):
                sent += len(piece)
            ending = read_until_closed(sock, 10.0)
        assert refused(ending), ending
        growth = vm(pid, "VmHWM") - before  # the peak, so a brief spike counts too
        assert growth < 32 * MIB, f"RSS grew {growth / MIB:.1f} MiB after {sent} bytes"
        assert exchange(running, get()).status == 200  # still serving


def test_a_silent_socket_and_slow_heads_are_closed(hub: Hub) -> None:
    results: dict[str, Ending] = {}

    def silent() -> None:
        with hub.connect() as sock:
            results["silent"] = read_until_closed(sock, HEADER_TIMEOUT + SLACK)

    def half_request_line() -> None:
        with hub.connect() as sock:
            started = time.monotonic()
            sock.sendall(b"GET /hea")
            results["half line"] = read_until_closed(sock, HEADER_TIMEOUT + SLACK, started)

    def trickle() -> None:
        # slowloris: a header line every 0.5 s keeps arriving, but the head never completes
        with hub.connect() as sock:
            started = time.monotonic()
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            for n in range(40):  # would last 20 s
                ending = read_until_closed(sock, 0.5)
                if ending.how != "timeout" or not send_all(sock, b"X-%d: 1\r\n" % n):
                    results["trickle"] = Ending(ending.data, ending.how, time.monotonic() - started)
                    return
            results["trickle"] = Ending(b"", "timeout", time.monotonic() - started)

    threads = [threading.Thread(target=f) for f in (silent, half_request_line, trickle)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(results) == {"silent", "half line", "trickle"}, results
    for name, ending in results.items():
        assert ending.how in ("eof", "reset"), (name, ending)
        assert HEADER_TIMEOUT - 0.5 <= ending.after <= HEADER_TIMEOUT + SLACK, (name, ending)
    assert results["silent"].data == b""  # nothing was asked: no unsolicited response
    assert results["half line"].status == 408, results["half line"]
    assert results["trickle"].status in (408, None), results["trickle"]


def post_head(length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_stalled_body_is_cut(hub: Hub, framing: str) -> None:
    with hub.connect() as sock:
        started = time.monotonic()
        if framing == "chunked":
            sock.sendall(post_head() + b"%x\r\n" % len(BODY) + BODY[:10])
        else:
            sock.sendall(post_head(len(BODY)) + BODY[:10])
        ending = read_until_closed(sock, BODY_TIMEOUT + SLACK, started)
    assert ending.how in ("eof", "reset"), ending
    assert ending.status is None, ending  # not published: no 200
    assert BODY_TIMEOUT - 0.5 <= ending.after <= BODY_TIMEOUT + SLACK, ending


def test_a_slow_but_steady_body_is_served(hub: Hub) -> None:
    # The body timeout counts silence between reads (like nginx's client_body_timeout), so a
    # body that takes longer than it in total, one byte every second, is still served.
    with hub.connect() as sock:
        sock.sendall(post_head(len(BODY)) + BODY[:-4])
        started = time.monotonic()
        for byte in BODY[-4:]:
            assert read_until_closed(sock, BODY_TIMEOUT / 2).how == "timeout"  # still open
            sock.sendall(bytes([byte]))
        assert time.monotonic() - started > BODY_TIMEOUT
        ending = read_until_closed(sock, 10.0)
    assert ending.status == 200, ending


def test_an_idle_kept_alive_connection_is_closed(hub: Hub) -> None:
    with hub.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b'"status"' not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
        ending = read_until_closed(sock, KEEP_ALIVE + SLACK)
    assert ending.how in ("eof", "reset"), ending
    assert ending.data == b"", ending


def test_pipelined_requests_of_every_framing_are_all_served(hub: Hub) -> None:
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (BODY[:7], BODY[7:]))
    requests = (
        post_head(len(BODY))
        + BODY
        + post_head()
        + chunked
        + b"0\r\nX-Trailer: 1\r\n\r\n"
        + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        + get()
    )
    # Sent in pieces of 13 bytes: split inside heads, chunk sizes, chunk data and trailers.
    with hub.connect() as sock:
        for start in range(0, len(requests), 13):
            sock.sendall(requests[start : start + 13])
        ending = read_until_closed(sock, 10.0)
    assert ending.how == "eof", ending
    assert ending.data.count(b"HTTP/1.1 ") == 4, ending
    assert ending.data.count(b"HTTP/1.1 200 OK\r\n") == 4, ending


def test_a_head_ending_in_bare_line_feeds_is_framed_too(hub: Hub) -> None:
    # h11 accepts LF line ends; the guard must find where such a head ends (or the head
    # timeout would cut a served request and the size limit would count the body).
    ending = exchange(hub, b"GET /health HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n")
    parser = "h11" if "HTTP parser h11" in hub.process.log else "httptools"
    assert ending.status == (200 if parser == "h11" else 400), ending  # llhttp is strict
    big = b"GET /health HTTP/1.1\nX-Big: " + b"a" * (40 * 1024) + b"\n\n"
    assert refused(exchange(hub, big)), "a bare-LF head over the limit"


RLIMIT_WRAPPER = (
    "import resource, runpy, sys\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
    "sys.argv = ['ssehub', *sys.argv[1:]]\n"
    "runpy.run_module('ssehub.cli', run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_NOFILE")
@pytest.mark.parametrize("http", PARSERS)
def test_idle_sockets_cannot_keep_health_or_streams_out(http: str) -> None:
    # The attack, scaled down: the server may hold 256 files; 300 sockets connect and
    # say nothing. Without the cap the server runs out of descriptors and /health waits for the
    # header timeout (20 s); with --max-pending-connections 100 the longest-waiting are closed.
    command = [sys.executable, "-c", RLIMIT_WRAPPER]
    with serving(http, "--max-pending-connections", "100", command=command) as running:
        stream = RawStream(running.port, "/events?topic=limits", timeout=10.0)
        idle: list[socket.socket] = []
        try:
            assert stream.status == 200
            started = time.monotonic()
            idle.extend(running.connect() for _ in range(300))
            # The first idle socket is the longest waiting: it is closed once it has waited 1 s.
            first = read_until_closed(idle[0], 10.0)
            assert first.how in ("eof", "reset"), first
            assert first.data == b"", first
            ending = exchange(running, get(), timeout=5.0)
            assert ending.status == 200, ending
            assert time.monotonic() - started < 10.0
            # The event stream opened before the flood is not a waiting connection: it lives.
            assert exchange(running, publish_request()).status == 200
            (event,) = stream.read_events(1, timeout=10.0)
            assert event.data == "x"
        finally:
            stream.close()
            for sock in idle:
                sock.close()


def publish_request() -> bytes:
    return (
        b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )


def test_the_documented_defaults_close_silent_and_half_open_requests_within_30_s() -> None:
    # Issue 18's bar with default settings: 20 s (docs/security.md), well within 30 s.
    with serving("httptools") as running:
        results: dict[str, Ending] = {}

        def watch(name: str, first_bytes: bytes) -> None:
            with running.connect(timeout=35.0) as sock:
                started = time.monotonic()
                if first_bytes:
                    sock.sendall(first_bytes)
                results[name] = read_until_closed(sock, 30.0, started)

        threads = [
            threading.Thread(target=watch, args=("silent", b"")),
            threading.Thread(target=watch, args=("half line", b"GET /hea")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(35)
        for name, ending in results.items():
            assert ending.how in ("eof", "reset"), (name, ending)
            assert 19.0 <= ending.after <= 30.0, (name, ending)
        assert results["half line"].status == 408
        assert len(results) == 2
