"""EventSource (blocking) against a real scripted server: the same rules as the async twin."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import httpx
import pytest
from sse_testkit import HANG, Reply, ScriptServer, refused_url, sse

from ssehub import (
    ConfigurationError,
    ConnectionFailed,
    EventTooLarge,
    MessageEvent,
    MissingDependency,
)
from ssehub.client import EventSource, ReadyState, ReconnectPolicy

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(initial_retry=0.001, max_delay=0.01)


def collect(url: str, **kwargs: Any) -> list[MessageEvent]:
    with EventSource(url, **kwargs) as source:
        return list(source)


def run_in_thread(source: EventSource[MessageEvent]) -> tuple[threading.Thread, list[Any]]:
    """Iterate ``source`` in a thread; the list gets the events, then any exception."""
    out: list[Any] = []

    def consume() -> None:
        try:
            out.extend(source)
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    return thread, out


def test_events_ids_and_retry_across_reconnects(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(
        path,
        sse(b"retry: 5\nid: 42\ndata: first\n\n"),
        sse(b"data: second\n\nid: \xe2\x80\xa6\ndata: third\n\n"),
        sse(b"data: fourth\n\n"),
    )
    delays: list[float] = []
    events = collect(url, on_reconnect=lambda d, _c: delays.append(d))
    assert [(e.data, e.id) for e in events] == [
        ("first", "42"),
        ("second", "42"),
        ("third", "\u2026"),
        ("fourth", "\u2026"),
    ]
    requests = server.requests(path)
    assert b"last-event-id" not in requests[0].headers
    assert requests[1].headers[b"last-event-id"] == b"42"
    assert requests[2].headers[b"last-event-id"] == b"\xe2\x80\xa6"
    assert len(delays) == 3
    assert all(0.005 <= d <= 0.0075 for d in delays)


def test_parser_rules_hold_over_http(server: ScriptServer) -> None:
    url = server.script(
        server.new_path(),
        sse(
            b"\xef\xbb\xbfdata: a\rdata: b\r\r",
            b"data:  x\n\nevent: e\ndata: \xff\n\nid: 9\ndata: cut",
        ),
    )
    events = collect(url, policy=FAST)
    assert [(e.event, e.data, e.id) for e in events] == [
        ("message", "a\nb", ""),
        ("message", " x", ""),
        ("e", "\ufffd", ""),
    ]


@pytest.mark.parametrize("bad", [b"1000x", b"-5", b" 5", b"+5", b"1_000", "\uff15".encode(), b""])
def test_retry_validation_over_http(server: ScriptServer, bad: bytes) -> None:
    # SSE-SPEC §5 vector 9: 03000 is 3000 ms; the invalid value after it is ignored.
    path = server.new_path()
    body = b"retry: 03000\n\nretry: " + bad + b"\ndata: x\n\n"
    url = server.script(path, sse(body), sse(b"data: never\n\n"))
    delays: list[float] = []

    def on_reconnect(delay: float, _cause: BaseException | None) -> None:
        delays.append(delay)
        source.close()  # the 3 s wait is not needed to see its length

    source = EventSource(
        url, policy=ReconnectPolicy(initial_retry=0.25, jitter=0.0), on_reconnect=on_reconnect
    )
    with source:
        assert [e.data for e in source] == ["x"]
        assert source.reconnection_time == 3.0
    assert delays == [3.0]
    assert len(server.requests(path)) == 1


def test_204_stops_and_errors_fail(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, Reply(status=204, headers=[]))
    assert collect(url, policy=FAST) == []
    assert len(server.requests(path)) == 1

    path = server.new_path()
    url = server.script(path, Reply(status=404), sse(b"data: never\n\n"))
    with EventSource(url, policy=FAST) as source:
        with pytest.raises(ConnectionFailed) as info:
            next(source)
        assert source.ready_state is ReadyState.CLOSED
        assert list(source) == []
    assert info.value.status_code == 404
    assert len(server.requests(path)) == 1

    url = server.script(server.new_path(), Reply(headers=[(b"content-type", b"text/html")]))
    with pytest.raises(ConnectionFailed, match="text/html"):
        collect(url, policy=FAST)


def test_retry_statuses_option(server: ScriptServer) -> None:
    url = server.script(server.new_path(), Reply(status=503), sse(b"data: ok\n\n"))
    policy = ReconnectPolicy(initial_retry=0.001, retry_statuses=frozenset({503}))
    causes: list[BaseException | None] = []
    opened: list[int] = []
    events = collect(
        url,
        policy=policy,
        on_reconnect=lambda _d, c: causes.append(c),
        on_open=lambda: opened.append(len(causes)),
    )
    assert [e.data for e in events] == ["ok"]
    assert [getattr(c, "status_code", c) for c in causes] == [503, None]
    assert opened == [1]


def test_close_from_on_open_makes_no_further_request(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: never delivered\n\n", HANG))

    def on_open() -> None:
        source.close()

    source = EventSource(url, policy=FAST, on_open=on_open)
    assert list(source) == []
    assert source.ready_state is ReadyState.CLOSED
    server.wait_disconnects(path, 1)
    assert len(server.requests(path)) == 1


def test_refused_connections_back_off_with_a_cap() -> None:
    sock, url = refused_url()
    delays: list[float] = []
    causes: list[BaseException | None] = []
    policy = ReconnectPolicy(initial_retry=0.001, max_delay=0.004, jitter=0.0)

    def on_reconnect(delay: float, cause: BaseException | None) -> None:
        delays.append(delay)
        causes.append(cause)
        if len(delays) == 5:
            source.close()

    with sock:
        source = EventSource(url, policy=policy, on_reconnect=on_reconnect)
        assert list(source) == []
    # After a failure the backoff grows from MIN_FAILED_RETRY (0.1 s): capped at once here.
    assert delays == [0.001, 0.004, 0.004, 0.004, 0.004]
    assert all(isinstance(c, httpx.ConnectError) for c in causes)
    assert "Connection refused" in str(causes[0])  # the system's words, not "ECONNREFUSED"


def test_redirects_are_followed(server: ScriptServer) -> None:
    start, target = server.new_path(), server.new_path()
    server.script(target, sse(b"data: moved\n\n"))
    url = server.script(start, Reply(status=308, headers=[(b"location", target.encode())]))
    with EventSource(url, policy=FAST) as source:
        assert next(source).data == "moved"
        assert source.url == server.url(target)
        assert source.origin == f"http://127.0.0.1:{server.port}"


def test_idle_stream_is_reconnected(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"id: 3\ndata: a\n\n", HANG), sse(b"data: b\n\n"))
    events = collect(url, idle_timeout=0.2, policy=FAST)
    assert [(e.data, e.id) for e in events] == [("a", "3"), ("b", "3")]
    assert server.requests(path)[1].headers[b"last-event-id"] == b"3"


def test_oversized_event_raises(server: ScriptServer) -> None:
    url = server.script(server.new_path(), sse(b"data: " + b"y" * 3000, HANG))
    with EventSource(url, max_event_size=1000, policy=FAST) as source:
        with pytest.raises(EventTooLarge):
            next(source)
        assert source.ready_state is ReadyState.CLOSED


def test_close_from_another_thread_during_the_wait(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: one\n\n"), sse(b"data: never\n\n"))
    waiting = threading.Event()
    # A 60 s reconnection time: only close() can end this test quickly.
    source = EventSource(
        url,
        policy=ReconnectPolicy(initial_retry=60.0),
        on_reconnect=lambda _d, _c: waiting.set(),
    )
    thread, out = run_in_thread(source)
    assert waiting.wait(5)
    source.close()
    thread.join(5)
    assert not thread.is_alive()
    assert [e.data for e in out] == ["one"]
    assert len(server.requests(path)) == 1


def test_close_from_another_thread_while_reading(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: a\n\n", HANG))
    source = EventSource(url, policy=FAST)
    assert next(source).data == "a"
    thread, out = run_in_thread(source)
    server.wait_requests(path, 1)
    source.close()
    thread.join(5)
    assert not thread.is_alive()
    assert out == []
    server.wait_disconnects(path, 1)
    assert len(server.requests(path)) == 1


def test_close_from_another_thread_while_waiting_for_headers(server: ScriptServer) -> None:
    path = server.new_path()
    gate = server.gate()
    url = server.script(path, Reply(before_headers=gate, steps=[b"data: late\n\n"]))
    # No idle timeout: only close() can end the wait for the headers.
    source = EventSource(url, policy=FAST, idle_timeout=None)
    thread, out = run_in_thread(source)
    server.wait_requests(path, 1)
    source.close()
    thread.join(5)  # the gate is still shut: the server has not answered
    assert not thread.is_alive()
    gate.open()
    assert out == []
    server.wait_disconnects(path, 1)
    assert len(server.requests(path)) == 1


def test_close_ends_a_wait_for_headers_that_never_come() -> None:
    # A raw server that accepts and reads the request, then never answers.
    request_seen = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        request_seen.set()

    with listener:
        acceptor = threading.Thread(target=serve, daemon=True)
        acceptor.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/events"
        source = EventSource(url, policy=FAST, idle_timeout=None)
        thread, out = run_in_thread(source)
        assert request_seen.wait(5)
        assert source.ready_state is ReadyState.CONNECTING
        source.close()
        thread.join(5)
        assert not thread.is_alive(), "close() did not interrupt the wait for headers"
        acceptor.join(5)
        assert out == []
        assert source.ready_state is ReadyState.CLOSED
        # The client hung up: the server sees the end of the connection.
        assert accepted[0].recv(1) == b""
        accepted[0].close()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs at backlog")
def test_close_ends_a_connect_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    # With its accept queue full (backlog 0 holds one connection), Linux drops new SYNs: a
    # connect to this listener stays in progress until close() aborts it.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    address = listener.getsockname()
    filler = socket.create_connection(address, timeout=5)
    connecting = threading.Event()
    connect_ex = socket.socket.connect_ex

    def spy(sock: socket.socket, target: Any) -> int:
        code = connect_ex(sock, target)
        if target == address:
            connecting.set()
        return code

    monkeypatch.setattr(socket.socket, "connect_ex", spy)
    with listener, filler:
        url = f"http://127.0.0.1:{address[1]}/events"
        source = EventSource(url, policy=FAST, connect_timeout=None, idle_timeout=None)
        thread, out = run_in_thread(source)
        assert connecting.wait(5)
        source.close()
        thread.join(5)
        assert not thread.is_alive(), "close() did not interrupt the connect"
    assert out == []


def test_an_incompatible_httpx_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPool(httpx.BaseTransport):
        pass

    monkeypatch.setattr(httpx, "HTTPTransport", NoPool)
    with pytest.raises(RuntimeError, match=r"HTTPTransport\._pool"):
        EventSource("http://127.0.0.1:1/")


def test_a_given_client_is_used_and_left_open(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: x\n\n"))
    with httpx.Client(headers={"X-From": "mine"}) as client:
        with EventSource(url, client=client, policy=FAST) as source:
            assert [e.data for e in source] == ["x"]
        assert not client.is_closed
    assert server.requests(path)[0].headers[b"x-from"] == b"mine"


def test_no_buffered_event_after_close(server: ScriptServer) -> None:
    url = server.script(server.new_path(), sse(b"data: 1\n\ndata: 2\n\n", HANG))
    with EventSource(url, policy=FAST) as source:
        for event in source:
            assert event.data == "1"
            source.close()
        assert list(source) == []


def test_decoder(server: ScriptServer) -> None:
    url = server.script(server.new_path(), sse(b"data: 1\n\ndata: 2\n\n"))
    with EventSource(url, policy=FAST, decoder=lambda e: int(e.data) * 10) as source:
        assert list(source) == [10, 20]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "file:///tmp/x", "http://", "nonsense"])
def test_invalid_urls_are_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError):
        EventSource(url)


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingDependency) as info:
        EventSource("http://127.0.0.1:1/")
    assert info.value.extra == "client"
    assert "ssehub[client]" in str(info.value)
