"""Streaming benchmark: one SSE stream of 200 000 events of 64 bytes through uvicorn.

The same Starlette app runs twice, once per library; the only difference is the response class
(``ssehub.EventSourceResponse`` vs ``sse_starlette.EventSourceResponse``), and both are given
``sep="\\n"`` so they write byte-identical frames. uvicorn runs with uvloop and httptools, log
level warning, no access log, pinned to core 0; the client (this process) is pinned to core 1
and reads the body as fast as it can with a blocking socket and httptools, counting frames.

Per round and library: events/s seen by the client, and the server's CPU time per event (the
server reports its own ``time.process_time()`` before and after the stream). Rounds alternate
which library goes first; the table shows medians and ratios.

Run: ``taskset -c 1 uv run python benchmarks/bench_stream.py [--rounds N] [--quick]``
(``--profile`` also writes a cProfile of each server to ``benchmarks/profile-<lib>.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httptools
from _common import alternate, describe_environment, median, print_table

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
LIBS = ("ssehub", "sse-starlette")
FRAME_BYTES = 64
# "data: " + payload + "\n\n" is exactly FRAME_BYTES long.
PAYLOAD = "x" * (FRAME_BYTES - len("data: ") - 2)


# --------------------------------------------------------------------------- server side


def build_app(lib: str, events: int) -> object:
    """The benchmarked app; only the response class depends on ``lib``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if lib == "ssehub":
        from ssehub import EventSourceResponse
    else:
        from sse_starlette import EventSourceResponse

    async def numbers(count: int) -> object:
        for _ in range(count):
            yield PAYLOAD

    async def paced_numbers(count: int) -> object:
        # A producer that gives the event loop a turn before every event, as one awaiting a
        # queue or a socket does: batching can then only come from the response itself.
        for _ in range(count):
            await asyncio.sleep(0)
            yield PAYLOAD

    async def stream(request: Request) -> object:
        count = int(request.query_params.get("n", events))
        source = paced_numbers if request.query_params.get("paced") else numbers
        return EventSourceResponse(source(count), sep="\n")

    async def cpu(request: Request) -> PlainTextResponse:
        return PlainTextResponse(repr(time.process_time()))

    return Starlette(routes=[Route("/stream", stream), Route("/cpu", cpu)])


def serve(lib: str, port: int, events: int, profile: Path | None) -> None:
    import uvicorn

    os.sched_setaffinity(0, {0})
    config = uvicorn.Config(
        build_app(lib, events),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    profiler = cProfile.Profile() if profile is not None else None
    try:
        # uvicorn re-raises the SIGINT that stopped it once it has shut down cleanly.
        if profiler is None:
            server.run()
        else:
            profiler.runcall(server.run)
    except KeyboardInterrupt:
        pass
    if profiler is None or profile is None:
        return
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    profile.write_text(out.getvalue())


# --------------------------------------------------------------------------- client side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # a benchmark harness waiting for a child process to bind, bounded
    raise SystemExit("server did not start within 15 s")


class _Reader:
    """httptools callbacks: collect the body, count frames across chunk boundaries."""

    def __init__(self, count_frames: bool) -> None:
        self.count_frames = count_frames
        self.frames = 0
        self.body = bytearray()
        self.done = False
        self.status = 0
        self._tail = b""

    def on_body(self, body: bytes) -> None:
        if self.count_frames:
            # A frame ends with a blank line; the carried byte catches a split "\n|\n".
            joined = self._tail + body
            self.frames += joined.count(b"\n\n")
            self._tail = joined[-1:] if joined[-2:] != b"\n\n" else b""
        else:
            self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def http_get(port: int, path: str, *, count_frames: bool = False) -> _Reader:
    reader = _Reader(count_frames)
    parser = httptools.HttpResponseParser(reader)
    buffer = bytearray(1 << 18)
    view = memoryview(buffer)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(120)  # bounded: a stuck server fails the run instead of hanging it
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while not reader.done:
            n = sock.recv_into(buffer)
            if n == 0:
                break
            parser.feed_data(view[:n])
    reader.status = parser.get_status_code()
    return reader


def cpu_seconds(port: int) -> float:
    return float(http_get(port, "/cpu").body.decode())


def measure(port: int, events: int, *, paced: bool = False) -> dict[str, float]:
    cpu_before = cpu_seconds(port)
    start = time.perf_counter()
    query = f"/stream?n={events}" + ("&paced=1" if paced else "")
    reader = http_get(port, query, count_frames=True)
    elapsed = time.perf_counter() - start
    cpu_used = cpu_seconds(port) - cpu_before
    # A library may send a first comment (": ...\n\n") before the events: allow a few extra.
    if reader.status != 200 or not events <= reader.frames <= events + 3:
        raise SystemExit(f"bad stream: status {reader.status}, {reader.frames} frames")
    return {
        "events_per_s": events / elapsed,
        "cpu_us_per_event": cpu_used / events * 1e6,
        "seconds": elapsed,
    }


@contextlib.contextmanager
def servers(events: int, profile: bool) -> Iterator[dict[str, int]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for lib in LIBS:
            ports[lib] = free_port()
            cmd = ["taskset", "-c", "0", sys.executable, __file__, "--serve", lib]
            cmd += ["--port", str(ports[lib]), "--events", str(events)]
            if profile:
                cmd += ["--profile-to", str(HERE / f"profile-{lib}.txt")]
            procs[lib] = subprocess.Popen(cmd)
        for lib in LIBS:
            wait_until_listening(ports[lib], procs[lib])
        yield ports
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly (and writes profiles)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="10 000 events, one round")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="cProfile both servers")
    parser.add_argument("--serve", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.events, args.profile_to)
        return

    events = 10_000 if args.quick else args.events
    rounds = 1 if args.quick else args.rounds
    os.sched_setaffinity(0, {1})  # the client; the servers are on core 0
    print(describe_environment())
    print(f"{events:,} events of {FRAME_BYTES} bytes per stream, {rounds} rounds")
    with servers(events, args.profile) as ports:
        for lib in LIBS:  # warm-up: imports, first-request paths, TCP
            measure(ports[lib], min(events, 20_000))
        print("\nproducer always ready (the issue's benchmark)")
        results = alternate(
            rounds, [(lib, lambda port=ports[lib]: measure(port, events)) for lib in LIBS]
        )
        print("\npaced producer (await asyncio.sleep(0) before each event)")
        paced = alternate(
            rounds,
            [(lib, lambda port=ports[lib]: measure(port, events, paced=True)) for lib in LIBS],
        )

    for title, measured in (("producer always ready", results), ("paced producer", paced)):
        ours, theirs = measured["ssehub"], measured["sse-starlette"]
        rows = []
        for key, label, better in (
            ("events_per_s", "events/s (client)", "higher"),
            ("cpu_us_per_event", "server CPU µs/event", "lower"),
        ):
            a, b = median(ours, key), median(theirs, key)
            ratio = a / b if better == "higher" else b / a
            rows.append([label, f"{a:,.2f}", f"{b:,.2f}", f"{ratio:.2f}x"])
        print_table(
            f"One stream, {events:,} x {FRAME_BYTES}-byte events, {title}, "
            f"median of {rounds} rounds",
            ["metric", "ssehub", "sse-starlette", "ssehub advantage"],
            rows,
        )
    if args.profile:
        print(f"\nprofiles written to {HERE}/profile-*.txt")


if __name__ == "__main__":
    main()
