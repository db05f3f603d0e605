"""The hub and a plain ``EventSourceResponse`` app under real ASGI servers, as subprocesses.

Servers: uvicorn (``--http httptools`` and ``--http h11``), hypercorn (asyncio, and trio with
``--worker-class trio``, where the streams' timers run on trio's own clock task) and granian, each
started the way its documentation says, on a free port of 127.0.0.1, in its own process group.

A. The hub (``ssehub.hub:create_app``, default settings, in-memory broker) under each server:
   a stream receives a published event; an idle stream is pinged (``SSEHUB_PING=1``);
   ``Last-Event-ID`` resumes exactly after the given event;
   SIGINT with three streams open ends each with a clean end of body (the chunked terminator),
   and the process exits within 5 s, with its normal status, and without a traceback.
B. ``tests/integration/plain_app.py`` (a Starlette route returning ``EventSourceResponse(gen())``,
   nothing else) under the exact commands a user types: the same shutdown requirements.

SIGINT goes to the whole process group, as Ctrl-C in a terminal sends it: granian's and
hypercorn's worker processes are in that group. Every server exits 0 on a SIGINT with no streams
open (``test_sigint_with_no_streams_open`` checks it), so 0 is the status the shutdown tests
accept. Streams are read over raw sockets (see ``server_kit``) so a clean end of body is told
apart from a connection that was closed or reset mid-body.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from .server_kit import BodyEnd, ChunkedDecoder, RawStream, ServerProcess, bin_path, free_port

pytestmark = pytest.mark.integration

GRACE = 5.0  # the longest a server may take to exit after SIGINT
TIMEOUT = 10.0  # any single wait for something that should be prompt
SIGINT_STATUS = 0  # what every server here returns for a plain SIGINT (checked below)
PY = sys.executable
OUTPUT_TAIL = 4000  # characters of a failed server's output shown (one traceback, the last logs)

Command = Callable[[int], list[str]]

HUB_SERVERS: dict[str, Command] = {
    "uvicorn-httptools": lambda port: [
        *(PY, "-m", "uvicorn", "ssehub.hub:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--http", "httptools"),
    ],
    "uvicorn-h11": lambda port: [
        *(PY, "-m", "uvicorn", "ssehub.hub:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--http", "h11"),
    ],
    "hypercorn": lambda port: [
        *(PY, "-m", "hypercorn", "ssehub.hub:create_app()", "--bind", f"127.0.0.1:{port}"),
    ],
    "hypercorn-single-process": lambda port: [
        *(PY, "-m", "hypercorn", "ssehub.hub:create_app()", "--bind", f"127.0.0.1:{port}"),
        *("--workers", "0"),
    ],
    "hypercorn-trio": lambda port: [
        *(PY, "-m", "hypercorn", "ssehub.hub:create_app()", "--bind", f"127.0.0.1:{port}"),
        *("--worker-class", "trio"),
    ],
    "granian": lambda port: [
        *(PY, "-m", "granian", "--interface", "asgi", "--factory", "ssehub.hub:create_app"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ],
}

# granian on SIGINT: in some clean-clone CI runs its worker did not exit. With the hub and no
# stream open, that was a SIGINT during the worker's startup: granian's own race (a bare ASGI
# app with a 0.3 s lifespan startup hangs alike), so start() now waits until the app serves.
# With three plain-app streams open (which got nothing): granian's worker runs the event loop
# only until the lifespan's shutdown is done, so a stream still sending its end never finishes
# and the main process waits for the worker without a kill timeout; the hub's lifespan waits
# for its streams (apps can call ssehub.drain_streams() in theirs; this plain app deliberately
# has none). Not strict for the plain app, so neither outcome fails the suite.
GRANIAN_RACE = pytest.mark.xfail(
    strict=False,
    reason="granian may stop its loop before the streams' clean end runs (no drain_streams)",
)


# What a user types (plus a free port), with the console scripts of this environment.
PLAIN_APP = "tests.integration.plain_app:app"
PLAIN_SERVERS: dict[str, Command] = {
    "uvicorn": lambda port: [bin_path("uvicorn"), PLAIN_APP, "--port", str(port)],
    "hypercorn": lambda port: [bin_path("hypercorn"), PLAIN_APP, "--bind", f"127.0.0.1:{port}"],
    "hypercorn-trio": lambda port: [
        *(bin_path("hypercorn"), PLAIN_APP, "--bind", f"127.0.0.1:{port}"),
        *("--worker-class", "trio"),
    ],
    "granian": lambda port: [
        *(bin_path("granian"), "--interface", "asgi", PLAIN_APP, "--port", str(port)),
    ],
}


def start(command: Command) -> ServerProcess:
    port = free_port()
    # Pings every second (the hub reads SSEHUB_PING; the plain app ignores it), so idle streams
    # ring their alarms while a test watches: under trio that is the clock's own timer task.
    server = ServerProcess(command(port), port, env={"SSEHUB_PING": "1"})
    try:
        server.wait_listening()
        wait_serving(port)
    except BaseException:
        server.close()
        raise
    return server


def wait_serving(port: int, timeout: float = 15.0) -> None:
    """Wait until the app answers HTTP (any status): its lifespan's startup is complete.

    A listening socket is not enough: granian binds it in its main process before its worker
    has started, and granian's worker hangs for ever when SIGINT arrives during its startup
    (reproduced with a bare ASGI app whose startup takes 0.3 s, no ssehub involved), so the
    shutdown tests signal a server only once it serves.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1.0, trust_env=False)
        except httpx.TransportError:  # noqa: PERF203 - a poll of another process
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # an external process: polled, with a deadline
        else:
            return


@pytest.fixture
def server_process() -> Iterator[Callable[[Command], ServerProcess]]:
    """Start servers for one test; whatever is left of them is killed afterwards."""
    started: list[ServerProcess] = []

    def run(command: Command) -> ServerProcess:
        started.append(start(command))
        return started[-1]

    yield run
    for server in started:
        server.close()


@pytest.fixture(scope="module", params=list(HUB_SERVERS))
def hub(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """One hub per server for the stream and resume tests (each test uses its own topic)."""
    server = start(HUB_SERVERS[request.param])
    yield server
    server.close()


def publish(port: int, topic: str, data: str) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT, trust_env=False) as c:
        response = c.post("/publish", json={"topic": topic, "data": data})
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


def open_stream(port: int, target: str, headers: dict[str, str] | None = None) -> RawStream:
    stream = RawStream(port, target, headers or {}, timeout=TIMEOUT)
    try:
        assert stream.http_version == "HTTP/1.1"
        assert stream.status == 200, stream.raw
        assert stream.response_headers["content-type"].startswith("text/event-stream")
    except BaseException:
        stream.close()
        raise
    return stream


def describe(server: ServerProcess) -> str:
    """The command without the interpreter's path."""
    return " ".join(arg for arg in server.command if arg != PY)


# -- A. the hub ------------------------------------------------------------------------------


def test_stream_receives_a_published_event(hub: ServerProcess) -> None:
    stream = open_stream(hub.port, "/events?topic=t")
    try:
        # The hub subscribes before it sends the headers: this event reaches the stream.
        event_id = publish(hub.port, "t", "x")
        (event,) = stream.read_events(1)
        assert (event.id, event.event, event.data) == (event_id, "message", "x")
        assert f"id: {event_id}\ndata: x\n\n".encode() in stream.body
    finally:
        stream.close()


def test_an_idle_stream_is_pinged(hub: ServerProcess) -> None:
    stream = open_stream(hub.port, "/events?topic=idle")
    try:
        # Two: the alarm rings for the first ping, then again after the ping's own send.
        stream.read_until(b": ping", count=2, timeout=10)
    finally:
        stream.close()


def test_resume_with_last_event_id(hub: ServerProcess) -> None:
    first = open_stream(hub.port, "/events?topic=resume")
    try:
        ids = [publish(hub.port, "resume", f"n{n}") for n in (1, 2, 3)]
        assert [e.id for e in first.read_events(3)] == ids
    finally:
        first.close()
    again = open_stream(hub.port, "/events?topic=resume", {"Last-Event-ID": ids[0]})
    try:
        assert "ssehub-reset" not in again.response_headers
        # A live event after the replay: everything before it is exactly what was replayed.
        marker = publish(hub.port, "resume", "live")
        events = again.read_events(3)
        assert [(e.id, e.data) for e in events] == [
            (ids[1], "n2"),
            (ids[2], "n3"),
            (marker, "live"),
        ]
    finally:
        again.close()


@pytest.mark.parametrize("name", list(HUB_SERVERS))
def test_sigint_with_no_streams_open(
    name: str, server_process: Callable[[Command], ServerProcess]
) -> None:
    # The server's own behaviour on a plain Ctrl-C: the status the other tests accept.
    server = server_process(HUB_SERVERS[name])
    started = time.monotonic()
    server.interrupt()
    status = server.wait_exit(GRACE)
    elapsed = time.monotonic() - started
    server.close()  # the output is complete once its pipes have closed
    assert status == SIGINT_STATUS, f"status {status} after {elapsed:.2f} s\n{server.output}"
    assert "Traceback" not in server.output, server.output


def foreign_tracebacks(output: str) -> list[str]:
    """The tracebacks in a server's output, less hypercorn's own for its connection tasks.

    hypercorn's default mode runs the app in a worker process that ignores SIGINT and learns
    of the shutdown from its parent; the app is told nothing until, at the end of
    ``--graceful-timeout`` (3 s), hypercorn cancels it (the streams then end cleanly, see
    ``EventSourceResponse``) and cancels each open connection's reader task, which asyncio
    logs as a ``CancelledError`` in ``hypercorn/asyncio/tcp_server.py``. That log is
    hypercorn's, printed for any request still open then, SSE or not; every other traceback
    counts. ``--workers 0`` (one process, signals handled) avoids it: tested strictly below.
    """
    blocks = output.split("Traceback (most recent call last):")[1:]
    return [
        block
        for block in blocks
        if not (
            "hypercorn/asyncio/tcp_server.py" in block
            and "_read_data" in block
            and "CancelledError" in block
            and "ssehub" not in block
        )
    ]


def shutdown_with_open_streams(server: ServerProcess, streams: list[RawStream]) -> None:
    """SIGINT with ``streams`` open: all the requirements checked together, one report."""
    ends: list[BodyEnd | BaseException | None] = [None] * len(streams)

    def read_to_end(index: int) -> None:
        try:
            ends[index] = streams[index].read_to_end(deadline)
        except BaseException as exc:  # reported below with the rest
            ends[index] = exc
        finally:
            streams[index].close()  # as curl does once the body has ended

    readers = [threading.Thread(target=read_to_end, args=(i,)) for i in range(len(streams))]
    started = time.monotonic()
    deadline = started + GRACE
    server.interrupt()
    for reader in readers:
        reader.start()
    status = server.wait_exit(GRACE)
    exited_after = time.monotonic() - started
    for reader in readers:
        reader.join(TIMEOUT)
    server.close()  # kills what did not exit, so the output below is complete
    problems = []
    if status is None:
        problems.append(f"still running {GRACE} s after SIGINT (killed)")
    elif status != SIGINT_STATUS:
        problems.append(f"exit status {status} (a plain SIGINT gives {SIGINT_STATUS})")
    if foreign_tracebacks(server.output):
        problems.append("a traceback in its output")
    for i, end in enumerate(ends):
        if not isinstance(end, BodyEnd):
            problems.append(f"stream {i}: the reader failed: {end!r}")
        elif not end.clean:
            problems.append(
                f"stream {i}: {end.how} after {end.after:.2f} s; received since SIGINT: "
                f"{len(end.tail)} body bytes, the last raw bytes {end.raw_tail!r}"
            )
    summary = f"{describe(server)}: exit {status} after {exited_after:.2f} s"
    assert not problems, "\n".join([summary, *problems, server.output[-OUTPUT_TAIL:]])


@pytest.mark.parametrize(
    "name",
    list(HUB_SERVERS),  # the hub's lifespan waits for its streams: strict under granian
)
def test_hub_sigint_ends_open_streams_cleanly(
    name: str, server_process: Callable[[Command], ServerProcess]
) -> None:
    server = server_process(HUB_SERVERS[name])
    streams: list[RawStream] = []
    try:
        streams.extend(open_stream(server.port, "/events?topic=t") for _ in range(3))
        event_id = publish(server.port, "t", "before shutdown")
        for stream in streams:  # every stream is live
            assert [e.id for e in stream.read_events(1)] == [event_id]
        shutdown_with_open_streams(server, streams)
    finally:
        for stream in streams:
            stream.close()


# -- B. a plain Starlette app ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=GRANIAN_RACE) if n == "granian" else n for n in PLAIN_SERVERS],
)
def test_plain_app_sigint_ends_open_streams_cleanly(
    name: str, server_process: Callable[[Command], ServerProcess]
) -> None:
    server = server_process(PLAIN_SERVERS[name])
    streams: list[RawStream] = []
    try:
        streams.extend(open_stream(server.port, "/events") for _ in range(3))
        for stream in streams:  # the generator runs: its first event arrives at once
            assert stream.read_events(1)[0].data == "tick 1"
        shutdown_with_open_streams(server, streams)
    finally:
        for stream in streams:
            stream.close()


# -- the reader itself -----------------------------------------------------------------------


def test_chunked_decoder_finds_the_terminator_in_any_split() -> None:
    # What "a clean end" means above rests on this decoder: check it byte by byte, with a
    # chunk extension and a trailer, and that a body cut before the terminator is not done.
    wire = b"6\r\n: ok\n\n\r\n14;ext=1\r\nid: 1\ndata: tick 1\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
    decoder = ChunkedDecoder()
    body = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert (body, decoder.done) == (b": ok\n\nid: 1\ndata: tick 1\n\n", True)
    cut = ChunkedDecoder()
    cut.feed(wire[: wire.index(b"0\r\n")] + b"0\r\n")
    assert not cut.done
