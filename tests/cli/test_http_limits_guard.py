"""The HTTP-limits guard of ``ssehub serve`` without a server: framing, refusals, timers, the cap.

The guard sits between an asyncio transport and uvicorn's protocol. Here the transport and the
wrapped protocol are recording fakes, and the event loop runs on a virtual clock (a loop whose
public ``time()`` is overridden), so timeouts of 20 s are tested without waiting for them. The
real-process attacks are in ``tests/integration/test_http_limits.py``; this file also checks
that the documented defaults are the real ones.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ssehub import ConfigurationError
from ssehub.cli._http_limits import EVICT_AFTER, LINGER, HttpLimits, guarded_protocol
from ssehub.hub import HubSettings
from ssehub.hub._settings import options

ROOT = Path(__file__).resolve().parents[2]
LIMITS = HttpLimits(
    max_header_size=1024, max_headers=10, header_timeout=20.0, body_timeout=20.0, max_pending=3
)
BODY = b'{"topic": "t", "data": "x"}'


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock and run the callbacks that became due."""
        self.now += seconds
        self.run_until_complete(asyncio.sleep(0))
        self.run_until_complete(asyncio.sleep(0))


class Inner(asyncio.Protocol):
    """Stands for uvicorn's protocol: records what reaches it."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.received = b""
        self.made = self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class Transport:
    """The public asyncio transport methods the guard may call, recorded."""

    def __init__(self, loop: VirtualLoop) -> None:
        self.loop = loop
        self.protocol: Any = None
        self.written = b""
        self.eof_written = self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)


class Harness:
    """One guarded protocol class (one server) on a virtual loop."""

    def __init__(self, limits: HttpLimits = LIMITS) -> None:
        self.loop = VirtualLoop()
        self.cls = guarded_protocol(Inner, limits)

    def connect(self) -> tuple[Any, Transport]:
        guard = self.cls(config="c", server_state="s", app_state="a")
        transport = Transport(self.loop)
        transport.protocol = guard

        async def made() -> None:
            guard.connection_made(transport)

        self.loop.run_until_complete(made())
        return guard, transport

    def inner(self, guard: Any) -> Inner:
        inner: Inner = guard._inner
        return inner


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.loop.close()


def requests() -> bytes:
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (BODY[:5], BODY[5:]))
    return (
        b"\r\n"
        + b"POST /publish HTTP/1.1\r\nHost: h\r\ncontent-LENGTH : %d\r\n\r\n%s" % (len(BODY), BODY)
        + b"POST /publish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + chunked
        + b"0\r\nX-Trailer: 1\r\n\r\n"
        + b"GET /a HTTP/1.1\nHost: h\n\n"
        + b"GET /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    )


def test_the_constructor_arguments_reach_the_wrapped_protocol(harness: Harness) -> None:
    guard, _ = harness.connect()
    inner = harness.inner(guard)
    assert inner.kwargs == {"config": "c", "server_state": "s", "app_state": "a"}
    assert inner.made
    assert harness.cls.__name__ == "GuardedInner"


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 100_000])
def test_every_framing_is_followed_across_any_split(harness: Harness, piece: int) -> None:
    data = requests()
    guard, transport = harness.connect()
    for start in range(0, len(data), piece):
        guard.data_received(data[start : start + piece])
    assert harness.inner(guard).received == data  # every byte passed on, unchanged
    assert not transport.closed
    assert transport.written == b""
    assert harness.cls._waiting.guards == {}  # the last request is complete: nothing waits
    # ... and the head timeout does not fire on a connection that is only kept alive
    harness.loop.advance(60.0)
    assert not transport.closed


def test_a_head_over_the_size_limit_is_answered_431_and_not_passed_on(harness: Harness) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"GET / HTTP/1.1\r\nX-A: ")
    for _ in range(100):
        guard.data_received(b"a" * 100)
    assert transport.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in transport.written
    assert transport.eof_written
    assert len(harness.inner(guard).received) <= LIMITS.max_header_size
    # lingering: what the client still sends is discarded, then the connection closes
    guard.data_received(b"a" * 10_000)
    assert len(harness.inner(guard).received) <= LIMITS.max_header_size
    harness.loop.advance(LINGER)
    assert transport.closed
    assert harness.inner(guard).lost


@pytest.mark.parametrize(("fields", "refused"), [(10, False), (11, True)])
def test_the_header_field_count(harness: Harness, fields: int, refused: bool) -> None:
    guard, transport = harness.connect()
    headers = b"".join(b"X-%d: 1\r\n" % n for n in range(fields))
    guard.data_received(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
    assert transport.written.startswith(b"HTTP/1.1 431") is refused
    assert (harness.inner(guard).received == b"") is refused


def test_a_later_request_over_the_limit_is_closed_without_a_response(harness: Harness) -> None:
    # An earlier response may still be in flight on a kept-alive connection.
    guard, transport = harness.connect()
    guard.data_received(b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
    guard.data_received(b"GET / HTTP/1.1\r\nX-A: " + b"a" * 2000)
    assert transport.closed
    assert transport.written == b""


def test_the_head_timeout_answers_408_only_after_some_bytes(harness: Harness) -> None:
    _, silent_transport = harness.connect()
    half, half_transport = harness.connect()
    half.data_received(b"GET /hea")
    harness.loop.advance(19.0)
    assert not silent_transport.closed
    assert not half_transport.closed
    harness.loop.advance(1.0)
    assert silent_transport.closed
    assert silent_transport.written == b""  # no unsolicited response on an unused socket
    assert half_transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def test_the_head_timeout_counts_the_whole_head_not_the_gaps(harness: Harness) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"GET / HTTP/1.1\r\n")
    for n in range(9):  # slowloris: a field every 2 s
        harness.loop.advance(2.0)
        guard.data_received(b"X-%d: 1\r\n" % n)
    assert not transport.closed
    harness.loop.advance(2.0)
    assert transport.written.startswith(b"HTTP/1.1 408")


def test_a_later_head_is_timed_from_its_first_byte(harness: Harness) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.loop.advance(100.0)  # idle between requests: uvicorn's keep-alive timeout's job
    assert not transport.closed
    guard.data_received(b"GET / HT")
    harness.loop.advance(19.5)
    assert not transport.closed
    harness.loop.advance(1.0)
    assert transport.closed


def test_the_body_timeout_counts_silence_between_reads(harness: Harness) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    for byte in BODY[:-1]:  # one byte every 10 s: slow, never silent for 20 s
        harness.loop.advance(10.0)
        guard.data_received(bytes([byte]))
    assert not transport.closed
    harness.loop.advance(20.0)
    assert transport.closed
    assert transport.written == b""  # the application may be answering: no status of ours


def test_time_when_the_server_does_not_read_is_not_the_clients(harness: Harness) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
    transport.reading = False  # uvicorn paused reading: its application has not taken the body
    harness.loop.advance(45.0)
    assert not transport.closed
    transport.reading = True
    harness.loop.advance(25.0)
    assert transport.closed


def test_the_cap_closes_the_longest_waiting_once_it_has_waited_a_second(
    harness: Harness,
) -> None:
    idle = [harness.connect() for _ in range(3)]
    harness.loop.advance(0.5)
    burst = [harness.connect() for _ in range(2)]  # over the cap of 3, but all young
    assert not any(transport.closed for _, transport in idle + burst)
    harness.loop.advance(EVICT_AFTER - 0.5)  # the first three have now waited 1 s
    closed = [transport.closed for _, transport in idle + burst]
    assert closed == [True, True, False, False, False]
    assert all(transport.written == b"" for _, transport in idle)
    # a stream (its request complete) never counts against the cap
    stream, stream_transport = harness.connect()
    stream.data_received(b"GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
    harness.loop.advance(EVICT_AFTER)
    newcomers = [harness.connect() for _ in range(3)]
    harness.loop.advance(EVICT_AFTER)
    assert not stream_transport.closed
    assert sum(not transport.closed for _, transport in newcomers) == 3
    assert len(harness.cls._waiting.guards) == 3


def test_each_server_counts_its_own_waiting_connections() -> None:
    one, two = guarded_protocol(Inner, LIMITS), guarded_protocol(Inner, LIMITS)
    assert one._waiting is not two._waiting


def test_settings_are_checked() -> None:
    for changes in (
        {"max_header_size": 0},
        {"max_headers": 0},
        {"keep_alive_timeout": 0},
        {"max_pending_connections": 0},
        {"header_timeout": -1.0},
        {"body_timeout": 0.0},
        {"http": "zttp"},
    ):
        with pytest.raises(ConfigurationError):
            HubSettings(**changes)  # type: ignore[arg-type]
    settings = HubSettings.from_sources(
        {"header_timeout": "off", "body_timeout": "0", "http": "H11"}, {}
    )
    assert (settings.header_timeout, settings.body_timeout, settings.http) == (None, None, "h11")
    assert HubSettings.from_sources(env={"SSEHUB_MAX_HEADER_SIZE": "8_192"}).max_header_size == 8192


LIMIT_OPTIONS = {
    "max_header_size": "--max-header-size",
    "max_headers": "--max-headers",
    "header_timeout": "--header-timeout",
    "body_timeout": "--body-timeout",
    "keep_alive_timeout": "--keep-alive-timeout",
    "max_pending_connections": "--max-pending-connections",
}


def documented_value(text: str) -> float:
    """``32 KiB`` -> 32768, ``20 s`` -> 20, ``10 000`` -> 10000."""
    match = re.fullmatch(r"([\d ]+)\s*(KiB|MiB|s)?", text.strip())
    assert match, text
    number = float(match[1].replace(" ", ""))
    return number * {"KiB": 1024, "MiB": 1024 * 1024}.get(match[2] or "", 1)


@pytest.mark.parametrize(("doc", "default_column"), [("security.md", 2), ("operations.md", 2)])
def test_the_documented_defaults_are_the_real_ones(doc: str, default_column: int) -> None:
    text = (ROOT / "docs" / doc).read_text()
    section = text.split("## HTTP limits and timeouts", 1)[1]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    specs = {spec.name: spec for spec in options()}
    for name, flag in LIMIT_OPTIONS.items():
        (row,) = [row for row in rows if f"`{flag}" in row[1]]
        assert documented_value(row[default_column]) == specs[name].default, (doc, name, row)
        assert specs[name].flag == flag
        if doc == "operations.md":
            assert specs[name].env in row[1], row


@pytest.mark.parametrize(("length", "refused"), [(1000, False), (1100, True)])
def test_a_chunk_line_sent_byte_by_byte_is_bounded(
    harness: Harness, length: int, refused: bool
) -> None:
    guard, transport = harness.connect()
    guard.data_received(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    line = b"1;" + b"e" * (length - 4) + b"\r\n"  # a chunk extension nobody needs
    for byte in line + b"x\r\n0\r\n\r\n":
        guard.data_received(bytes([byte]))
    assert transport.closed is refused
    assert transport.written == b""  # mid-request: a close, no status


def test_serve_puts_the_guard_in_front_of_the_parser_it_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ssehub.cli import serve as serve_module

    configs: list[dict[str, Any]] = []

    class Config:
        def __init__(self, app: object, **options: Any) -> None:
            configs.append(options)

    class Server:
        def __init__(self, config: Config) -> None:
            self.started = False

        def run(self, sockets: object = None) -> None:
            self.started = True

    uvicorn = importlib.import_module("uvicorn")
    fake = types.SimpleNamespace(Config=Config, Server=Server, config=uvicorn.config)
    monkeypatch.setattr(serve_module, "load_uvicorn", lambda: fake)
    settings = HubSettings(port=0, gc_threshold=0, http="h11", keep_alive_timeout=7)
    assert serve_module.serve(settings) == 0
    (options,) = configs
    assert options["http"].__name__ == "GuardedH11Protocol"
    assert issubclass(options["http"], asyncio.Protocol)
    assert options["timeout_keep_alive"] == 7
    assert options["h11_max_incomplete_event_size"] == settings.max_header_size


def test_an_unexpected_uvicorn_gets_a_warning_and_its_plain_parser(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ssehub.cli._http_limits import http_protocol

    renamed = types.SimpleNamespace(config=types.SimpleNamespace(HTTP_PROTOCOLS={}))
    with caplog.at_level("WARNING", logger="ssehub.hub"):
        assert http_protocol(renamed, "httptools", LIMITS) == "httptools"  # type: ignore[arg-type]
    assert "serving without the header size and count limits" in caplog.text
    real = http_protocol(importlib.import_module("uvicorn"), "httptools", LIMITS)
    assert isinstance(real, type)
    assert real.__name__ == "GuardedHttpToolsProtocol"
