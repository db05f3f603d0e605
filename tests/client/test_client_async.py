"""AsyncEventSource against a real scripted server on 127.0.0.1 (SSE-SPEC §5 vectors 1-18).

Every test scripts the replies of its own path; when they run out the server answers 204, which
ends the iteration, so each test observes the complete, deterministic behaviour of the client.
Reconnect delays go through a recording clock: nothing waits for real seconds.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from sse_testkit import HANG, Pause, RecordingClock, Reply, ScriptServer, refused_url, sse

from ssehub import ConfigurationError, ConnectionFailed, EventTooLarge, MessageEvent
from ssehub.client import AsyncEventSource, ReadyState, ReconnectPolicy

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST = ReconnectPolicy(initial_retry=0.001, max_delay=0.01)


async def collect(url: str, **kwargs: Any) -> tuple[list[MessageEvent], RecordingClock]:
    """Run a source to its end (the server's final 204) and return its events and delays."""
    clock = RecordingClock()
    with anyio.fail_after(10):
        async with AsyncEventSource(url, clock=clock, **kwargs) as source:
            events = [event async for event in source]
    return events, clock


async def drain(
    source: AsyncEventSource[MessageEvent], into: list[MessageEvent] | None = None
) -> None:
    """Iterate ``source`` to its end (as a task: ``StopAsyncIteration`` must not escape)."""
    async for event in source:
        if into is not None:
            into.append(event)


def triples(events: list[MessageEvent]) -> list[tuple[str, str, str]]:
    return [(e.event, e.data, e.id) for e in events]


# -- parser vectors through a real connection (§5 1-13) ----------------------------------------

PARSER_VECTORS: list[tuple[str, list[bytes], list[tuple[str, str, str]]]] = [
    ("lone-cr", [b"data: a\rdata: b\r\r"], [("message", "a\nb", "")]),
    ("split-crlf", [b"data: a\r", b"\ndata: b\r\n\r\n"], [("message", "a\nb", "")]),
    ("bom", [b"\xef\xbb\xbfdata: a\n\n"], [("message", "a", "")]),
    ("double-bom", [b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"], [("message", "b", "")]),
    ("bom-split", [b"\xef", b"\xbb", b"\xbfdata: a\n\n"], [("message", "a", "")]),
    ("two-spaces", [b"data:  a\n\n"], [("message", " a", "")]),
    ("tab", [b"data:\ta\n\n"], [("message", "\ta", "")]),
    ("no-space", [b"data:a\n\n"], [("message", "a", "")]),
    ("bare-data", [b"data\n\n"], [("message", "", "")]),
    ("two-bare-data", [b"data\ndata\n\n"], [("message", "\n", "")]),
    ("trailing-empty", [b"data: a\ndata:\ndata:\n\n"], [("message", "a\n\n", "")]),
    (
        "no-phantom-comment",
        [b"id: 1\ndata: a\n\n: ping\n\n"],
        [("message", "a", "1")],
    ),
    ("no-type-leak", [b"event: foo\n\ndata: x\n\n"], [("message", "x", "")]),
    ("retry-only", [b"retry: 10\n\n"], []),
    (
        "id-persists",
        [b"id: 1\ndata: a\n\ndata: b\n\n"],
        [("message", "a", "1"), ("message", "b", "1")],
    ),
    ("id-only-frame", [b"id: 5\n\ndata: x\n\n"], [("message", "x", "5")]),
    (
        "bare-id-resets",
        [b"id: 3\ndata: a\n\nid\ndata: c\n\n"],
        [("message", "a", "3"), ("message", "c", "")],
    ),
    (
        "only-cr-lf-break",
        ["data: a\vb\fc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\n\n".encode()],
        [("message", "a\vb\fc\x1cd\x1de\x1ef\x85g\u2028h\u2029i", "")],
    ),
    (
        "invalid-utf8",
        [b"data: \xff\n\ndata: ok\n\n"],
        [("message", "\ufffd", ""), ("message", "ok", "")],
    ),
    ("split-utf8", [b"data: \xe2\x80", b"\xa6\n\n"], [("message", "\u2026", "")]),
    ("field-names", [b"Data: x\n\ndata\x00: x\n\n data: x\n\nfoo: bar\n\n"], []),
    ("colons", [b"data: a:b: c\n\n"], [("message", "a:b: c", "")]),
    ("event-type", [b"event: add\ndata: 1\n\n"], [("add", "1", "")]),
]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [pytest.param(chunks, expected, id=name) for name, chunks, expected in PARSER_VECTORS],
)
async def test_parser_vectors_over_http(
    server: ScriptServer, chunks: list[bytes], expected: list[tuple[str, str, str]]
) -> None:
    url = server.script(server.new_path(), sse(*chunks))
    events, _ = await collect(url, policy=FAST)
    assert triples(events) == expected


# Vector 9: only ASCII digits set the reconnection time; anything else keeps the previous value.
INVALID_RETRY_VALUES = [b"1000x", b"-5", b" 5", b"+5", b"1_000", "\uff15".encode(), b""]


@pytest.mark.parametrize("bad", INVALID_RETRY_VALUES)
async def test_retry_validation_over_http(server: ScriptServer, bad: bytes) -> None:
    path = server.new_path()
    # 03000 is 3000 ms (leading zeros are digits); the invalid value after it changes nothing.
    body = b"retry: 03000\n\nretry: " + bad + b"\ndata: x\n\n"
    url = server.script(path, sse(body), sse(b"data: y\n\n"))
    policy = ReconnectPolicy(initial_retry=0.25, jitter=0.0)
    clock = RecordingClock()
    with anyio.fail_after(10):
        async with AsyncEventSource(url, policy=policy, clock=clock) as source:
            events = [event async for event in source]
            assert source.reconnection_time == 3.0
    assert [e.data for e in events] == ["x", "y"]
    # Both reconnects (after each stream's end; the open in between resets the backoff) wait
    # the server's 3 s, not the initial 0.25 s nor a value read from the invalid line.
    assert clock.delays == [3.0, 3.0]
    assert len(server.requests(path)) == 3


async def test_charset_parameter_is_ignored(server: ScriptServer) -> None:
    reply = Reply(
        headers=[(b"content-type", b"text/event-stream; charset=windows-1252")],
        steps=[b"data: ok\xe2\x80\xa6\n\n"],
    )
    events, _ = await collect(server.script(server.new_path(), reply), policy=FAST)
    assert [e.data for e in events] == ["ok\u2026"]


async def test_final_cr_dispatches_without_waiting_for_more_bytes(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: x\r\r", HANG))
    with anyio.fail_after(5):
        async with AsyncEventSource(url) as source:
            event = await source.__anext__()
    assert event.data == "x"
    await anyio.to_thread.run_sync(server.wait_disconnects, path, 1)


async def test_bom_is_stripped_again_on_each_connection(server: ScriptServer) -> None:
    bom = b"\xef\xbb\xbf"
    url = server.script(server.new_path(), sse(bom + b"data: a\n\n"), sse(bom + b"data: b\n\n"))
    events, _ = await collect(url, policy=FAST)
    assert [e.data for e in events] == ["a", "b"]


async def test_incomplete_final_event_is_dropped_and_its_id_not_sent(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: a\n\nid: 7\ndata: b"), sse(b"data: c\n\n"))
    events, _ = await collect(url, policy=FAST)
    assert triples(events) == [("message", "a", ""), ("message", "c", "")]
    assert b"last-event-id" not in server.requests(path)[1].headers


async def test_id_with_nul_is_ignored_and_never_sent(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"id: a\x00b\ndata: x\n\n"), sse(b"data: y\n\n"))
    events, _ = await collect(url, policy=FAST)
    assert triples(events) == [("message", "x", ""), ("message", "y", "")]
    assert all(b"last-event-id" not in r.headers for r in server.requests(path))


async def test_one_mebibyte_event_is_delivered_intact(server: ScriptServer) -> None:
    payload = bytes(range(97, 123)) * (1024 * 1024 // 26 + 1)
    url = server.script(server.new_path(), sse(b"data: " + payload, b"\n\n"))
    events, _ = await collect(url, policy=FAST)
    assert [e.data for e in events] == [payload.decode()]


async def test_oversized_event_raises_and_closes(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: " + b"x" * 5000, HANG))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, max_event_size=1024, policy=FAST) as source:
            with pytest.raises(EventTooLarge) as info:
                await source.__anext__()
            assert info.value.limit == 1024
            assert source.ready_state is ReadyState.CLOSED
            with pytest.raises(StopAsyncIteration):
                await source.__anext__()
    assert len(server.requests(path)) == 1


# -- status and content type (§5 14) -------------------------------------------------------------


async def test_204_closes_without_reconnecting(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, Reply(status=204, headers=[]))
    events, clock = await collect(url, policy=FAST)
    assert events == []
    assert len(server.requests(path)) == 1
    assert clock.delays == []


@pytest.mark.parametrize(
    ("status", "content_type"),
    [
        (404, b"text/event-stream"),
        (503, b"text/event-stream"),
        (500, b"text/plain"),
        (205, b"text/event-stream"),
        (200, b"text/html"),
        (200, None),
        (200, b"text/event-streamx"),
    ],
)
async def test_bad_status_or_type_fails_without_reconnecting(
    server: ScriptServer, status: int, content_type: bytes | None
) -> None:
    path = server.new_path()
    headers = [] if content_type is None else [(b"content-type", content_type)]
    url = server.script(path, Reply(status=status, headers=headers, steps=[b"data: no\n\n"]))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, policy=FAST, clock=RecordingClock()) as source:
            with pytest.raises(ConnectionFailed) as info:
                await source.__anext__()
            assert source.ready_state is ReadyState.CLOSED
            with pytest.raises(StopAsyncIteration):
                await source.__anext__()
    assert info.value.status_code == status
    assert len(server.requests(path)) == 1


@pytest.mark.parametrize(
    "content_type",
    [b"text/event-stream;", b"Text/Event-Stream; charset=utf-8", b" text/event-stream"],
)
async def test_event_stream_type_variants_open(server: ScriptServer, content_type: bytes) -> None:
    reply = Reply(headers=[(b"content-type", content_type)], steps=[b"data: ok\n\n"])
    events, _ = await collect(server.script(server.new_path(), reply), policy=FAST)
    assert [e.data for e in events] == ["ok"]


async def test_retrying_5xx_and_429_is_an_explicit_option(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(
        path,
        Reply(status=503, headers=[(b"retry-after", b"2")]),
        Reply(status=429),
        sse(b"data: finally\n\n"),
    )
    policy = ReconnectPolicy(initial_retry=0.5, jitter=0.0, retry_statuses=frozenset({503, 429}))
    causes: list[BaseException | None] = []
    opened: list[int] = []
    events, clock = await collect(
        url,
        policy=policy,
        on_reconnect=lambda _d, c: causes.append(c),
        on_open=lambda: opened.append(len(causes)),
    )
    assert [e.data for e in events] == ["finally"]
    # Retry-After (2 s) is a floor; then the backoff doubles; the open stream's end resets it.
    assert clock.delays == [2.0, 1.0, 0.5]
    # The retried statuses are named as causes; the normal end of the stream has none.
    assert [getattr(c, "status_code", c) for c in causes] == [503, 429, None]
    assert str(causes[0]) == "the server answered HTTP 503"
    assert opened == [2]  # one open, after the two retried answers


# -- reconnect with Last-Event-ID (§5 15) --------------------------------------------------------


@pytest.mark.parametrize(
    ("wire_id", "header"),
    [(b"42", b"42"), ("\u2026".encode(), b"\xe2\x80\xa6")],
    ids=["ascii", "utf8"],
)
async def test_reconnect_sends_the_last_event_id(
    server: ScriptServer, wire_id: bytes, header: bytes
) -> None:
    path = server.new_path()
    url = server.script(
        path,
        sse(b"retry: 50\nid: " + wire_id + b"\ndata: first\n\n"),
        sse(b"data: second\n\n"),
    )
    reconnects: list[tuple[float, BaseException | None]] = []
    events, clock = await collect(url, on_reconnect=lambda d, c: reconnects.append((d, c)))
    expected_id = wire_id.decode()
    assert triples(events) == [
        ("message", "first", expected_id),
        ("message", "second", expected_id),
    ]
    first, second, third = server.requests(path)
    assert b"last-event-id" not in first.headers
    assert first.headers[b"accept"] == b"text/event-stream"
    assert first.headers[b"cache-control"] == b"no-cache"
    assert second.headers[b"last-event-id"] == header
    assert third.headers[b"last-event-id"] == header
    # retry: 50 ms, plus at most 50 % jitter; the open in between resets the backoff.
    assert len(clock.delays) == 2
    assert all(0.05 <= d <= 0.075 for d in clock.delays)
    assert [c for _, c in reconnects] == [None, None]


async def test_initial_last_event_id_is_sent_on_the_first_request(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: x\n\n"))
    events, _ = await collect(url, last_event_id="17", policy=FAST)
    assert triples(events) == [("message", "x", "17")]
    assert server.requests(path)[0].headers[b"last-event-id"] == b"17"


async def test_custom_headers_are_sent_and_reserved_ones_refused(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: x\n\n"))
    await collect(url, headers={"Authorization": "Bearer t"}, policy=FAST)
    assert server.requests(path)[0].headers[b"authorization"] == b"Bearer t"
    with pytest.raises(ConfigurationError):
        AsyncEventSource(url, headers={"Last-Event-ID": "1"})
    with pytest.raises(ConfigurationError):
        AsyncEventSource(url, headers={"X-Evil": "a\r\nb"})


# -- backoff and cancellation (§5 16) ------------------------------------------------------------


async def test_refused_connections_back_off_exponentially_up_to_the_cap() -> None:
    sock, url = refused_url()
    reconnects: list[BaseException | None] = []
    policy = ReconnectPolicy(initial_retry=1.0, max_delay=10.0, jitter=0.5)
    clock = RecordingClock(park_after=7)
    with sock, anyio.fail_after(10):
        async with (
            AsyncEventSource(
                url,
                policy=policy,
                clock=clock,
                random=lambda: 0.5,
                on_reconnect=lambda _d, c: reconnects.append(c),
            ) as source,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(drain, source)
            await clock.parked.wait()
            assert source.ready_state is ReadyState.CONNECTING
            await source.aclose()
    # Doubling with a quarter of jitter; from 8 s * 1.5 on the window sits under the 10 s cap.
    assert clock.delays == pytest.approx([1.25, 2.5, 5.0] + [10.0 / 1.5 * 1.25] * 4)
    assert len(reconnects) == 7
    assert all(isinstance(c, httpx.ConnectError) for c in reconnects)


async def test_backoff_resets_after_a_successful_open(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(
        path,
        Reply(status=503),
        Reply(status=503),
        sse(b"data: up\n\n"),
        Reply(status=503),
        Reply(status=503),
    )
    policy = ReconnectPolicy(
        initial_retry=1.0, max_delay=100.0, jitter=0.0, retry_statuses=frozenset({503})
    )
    events, clock = await collect(url, policy=policy)
    assert [e.data for e in events] == ["up"]
    assert clock.delays == [1.0, 2.0, 1.0, 2.0, 4.0]
    assert len(server.requests(path)) == 6


async def test_close_during_the_reconnect_wait_makes_no_further_request(
    server: ScriptServer,
) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: one\n\n"), sse(b"data: never\n\n"))
    clock = RecordingClock(park_after=1)
    received: list[str] = []

    async def consume(source: AsyncEventSource[MessageEvent]) -> None:
        received.extend([e.data async for e in source])

    with anyio.fail_after(5):
        source = AsyncEventSource(url, clock=clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, source)
            await clock.parked.wait()
            await source.aclose()
    assert received == ["one"]
    assert source.ready_state is ReadyState.CLOSED
    assert len(server.requests(path)) == 1


async def test_close_mid_connect_makes_no_further_request_and_delivers_nothing(
    server: ScriptServer,
) -> None:
    path = server.new_path()
    gate = server.gate()
    url = server.script(path, Reply(before_headers=gate, steps=[b"data: late\n\n"]))
    received: list[MessageEvent] = []

    async def consume(source: AsyncEventSource[MessageEvent]) -> None:
        received.extend([e async for e in source])

    with anyio.fail_after(5):
        source = AsyncEventSource(url, policy=FAST)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, source)
            await server.await_requests(path, 1)
            await source.aclose()
        gate.open()
        await anyio.to_thread.run_sync(server.wait_disconnects, path, 1)
    assert received == []
    assert len(server.requests(path)) == 1


async def test_close_while_reading_an_open_stream(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: a\n\n", HANG))
    with anyio.fail_after(5):
        source = AsyncEventSource(url, policy=FAST)
        assert source.ready_state is ReadyState.CONNECTING
        async with anyio.create_task_group() as tg:
            first = await source.__anext__()
            assert source.ready_state is ReadyState.OPEN
            tg.start_soon(drain, source)  # blocks reading; aclose must end it quietly
            await anyio.wait_all_tasks_blocked()
            await source.aclose()
        await anyio.to_thread.run_sync(server.wait_disconnects, path, 1)
    assert first.data == "a"
    assert len(server.requests(path)) == 1


async def test_no_buffered_event_is_delivered_after_close(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: 1\n\ndata: 2\n\ndata: 3\n\n", HANG))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, policy=FAST) as source:
            async for event in source:
                assert event.data == "1"
                await source.aclose()
            with pytest.raises(StopAsyncIteration):
                await source.__anext__()
    assert len(server.requests(path)) == 1


async def test_cancelled_read_reconnects_at_once_without_losing_events(
    server: ScriptServer,
) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"id: 1\ndata: a\n\n", HANG), sse(b"id: 2\ndata: b\n\n"))
    clock = RecordingClock()
    with anyio.fail_after(5):
        async with AsyncEventSource(url, clock=clock, policy=FAST) as source:
            assert (await source.__anext__()).data == "a"
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, source)
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            rest = [e async for e in source]
    assert triples(rest) == [("message", "b", "2")]
    assert server.requests(path)[1].headers[b"last-event-id"] == b"1"
    assert clock.delays[0] == 0.0  # an interrupted read is not the server's failure


async def test_concurrent_iteration_is_refused(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(HANG))
    with anyio.fail_after(5):
        async with AsyncEventSource(url) as source, anyio.create_task_group() as tg:
            tg.start_soon(drain, source)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="already iterating"):
                await source.__anext__()
            await source.aclose()


# -- idle detection (§5 17) ------------------------------------------------------------------------


async def test_silent_stream_is_reconnected_after_the_idle_timeout(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"id: 7\ndata: a\n\n", HANG), sse(b"data: b\n\n"))
    causes: list[BaseException | None] = []
    events, _ = await collect(
        url, idle_timeout=0.2, policy=FAST, on_reconnect=lambda _d, c: causes.append(c)
    )
    assert triples(events) == [("message", "a", "7"), ("message", "b", "7")]
    assert server.requests(path)[1].headers[b"last-event-id"] == b"7"
    assert isinstance(causes[0], httpx.ReadTimeout)


async def test_heartbeats_keep_a_quiet_stream_open(server: ScriptServer) -> None:
    # 4 heartbeats 0.15 s apart: 0.6 s of stream, longer than the 0.4 s idle timeout.
    beats: list[bytes | Pause] = []
    for _ in range(4):
        beats += [b":\n", Pause(0.15)]
    path = server.new_path()
    url = server.script(path, sse(*beats, b"data: alive\n\n"))
    events, clock = await collect(url, idle_timeout=0.4, policy=FAST)
    assert [e.data for e in events] == ["alive"]
    assert len(server.requests(path)) == 2  # the stream, then the final 204
    assert len(clock.delays) == 1  # only the reconnect after the normal end


def test_default_idle_timeout_is_three_heartbeats() -> None:
    source = AsyncEventSource("http://127.0.0.1:1/")
    assert source._timeout.read == 45.0
    assert source._timeout.connect == 10.0


# -- redirects and URLs (§5 18) ------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_followed_and_the_final_url_reported(
    server: ScriptServer, status: int
) -> None:
    start, target = server.new_path(), server.new_path()
    server.script(target, sse(b"data: moved\n\n"))
    url = server.script(start, Reply(status=status, headers=[(b"location", target.encode())]))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, last_event_id="5", policy=FAST) as source:
            event = await source.__anext__()
            assert event.data == "moved"
            assert source.url == server.url(target)
            assert source.origin == f"http://127.0.0.1:{server.port}"
    assert server.requests(target)[0].headers[b"last-event-id"] == b"5"


async def test_redirect_to_another_scheme_fails(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, Reply(status=302, headers=[(b"location", b"ftp://127.0.0.1/x")]))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, policy=FAST) as source:
            with pytest.raises(ConnectionFailed) as info:
                await source.__anext__()
    assert isinstance(info.value.__cause__, httpx.UnsupportedProtocol)
    assert len(server.requests(path)) == 1


async def test_redirect_loop_fails(server: ScriptServer) -> None:
    path = server.new_path()
    loop = Reply(status=307, headers=[(b"location", path.encode())])
    url = server.script(path, *[loop] * 5)
    with anyio.fail_after(5):
        async with (
            httpx.AsyncClient(max_redirects=3) as client,
            AsyncEventSource(url, client=client, policy=FAST) as source,
        ):
            with pytest.raises(ConnectionFailed) as info:
                await source.__anext__()
            assert source.ready_state is ReadyState.CLOSED
    assert isinstance(info.value.__cause__, httpx.TooManyRedirects)
    assert len(server.requests(path)) == 4


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/events",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "mailto:a@example.com",
        "http://",
        "not a url",
        "//127.0.0.1/events",
        "http://exa mple.com/",
        "http://127.0.0.1:99999/",
        "http://[::1/",
    ],
)
def test_invalid_urls_are_rejected_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncEventSource(url)
    assert isinstance(info.value, ValueError)


# -- typed decoding and ownership ----------------------------------------------------------------


async def test_decoder_turns_events_into_values_and_its_errors_propagate(
    server: ScriptServer,
) -> None:
    url = server.script(
        server.new_path(), sse(b'data: {"n": 1}\n\ndata: not json\n\ndata: {"n": 3}\n\n')
    )

    def decode(event: MessageEvent) -> dict[str, int]:
        value: dict[str, int] = json.loads(event.data)
        return value

    with anyio.fail_after(5):
        async with AsyncEventSource(url, policy=FAST, decoder=decode) as source:
            assert await source.__anext__() == {"n": 1}
            with pytest.raises(json.JSONDecodeError):
                await source.__anext__()
            assert [v async for v in source] == [{"n": 3}]


async def test_a_given_client_is_used_and_left_open(server: ScriptServer) -> None:
    path = server.new_path()
    url = server.script(path, sse(b"data: x\n\n"))
    async with httpx.AsyncClient(headers={"X-From": "mine"}) as client:
        async with AsyncEventSource(
            url, client=client, policy=FAST, clock=RecordingClock()
        ) as source:
            assert [e.data async for e in source] == ["x"]
        assert not client.is_closed
    assert server.requests(path)[0].headers[b"x-from"] == b"mine"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (b"application/json", b'{"error": "invalid_topic", "detail": "bad topic"}', ": bad topic"),
        (b"application/problem+json", b'{"error": "forbidden"}', ": forbidden"),
        (b"text/plain; charset=utf-8", b"  try\n later  ", ": try later"),
        (b"text/html", b"<h1>no</h1>", "not 200"),
    ],
)
async def test_failure_message_explains_small_error_bodies(
    server: ScriptServer, content_type: bytes, body: bytes, expected: str
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    url = server.script(server.new_path(), Reply(status=400, headers=headers, steps=[body]))
    with anyio.fail_after(5):
        async with AsyncEventSource(url, policy=FAST) as source:
            with pytest.raises(ConnectionFailed) as info:
                await source.__anext__()
    assert str(info.value).endswith(expected)
    assert info.value.status_code == 400
