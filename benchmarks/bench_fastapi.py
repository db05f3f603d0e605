"""FastAPI's own SSE against the same FastAPI app streamed by ssehub: one stream, 200 000 events.

Both servers run the same FastAPI app: a path operation declared with
``response_class=fastapi.sse.EventSourceResponse`` that yields a pydantic model (its frame,
``data: {"v":"xxx..."}`` and the blank line, is exactly 64 bytes) with the return annotation
``AsyncIterator[Tick]``, so FastAPI validates and serialises every item against ``Tick``. The
only difference is one line: the ssehub server's router has
``route_class=ssehub.fastapi.EventSourceRoute``. uvicorn runs with uvloop and httptools, log
level warning, no access log, pinned to core 0; the client (this process) is pinned to core 1
and reads the body with a blocking socket and httptools, counting frames.

Per round and server: events/s seen by the client, and the server's CPU time per event (the
server reports its own ``time.process_time()`` before and after the stream). Rounds alternate
which server goes first; the table shows medians and the ratio.

Run: ``uv run --group dev python benchmarks/bench_fastapi.py [--rounds N] [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version

from _common import alternate, describe_environment, median, print_table
from bench_stream import free_port, measure, wait_until_listening
from pydantic import BaseModel

__all__ = ["main"]

WAYS = ("ssehub", "fastapi.sse")
FRAME_BYTES = 64
# 'data: {"v":"' + value + '"}' + "\n\n" is exactly FRAME_BYTES long.
VALUE = "x" * (FRAME_BYTES - len('data: {"v":""}') - 2)


class Tick(BaseModel):
    """The streamed item (module level: FastAPI resolves the annotations in the globals)."""

    v: str


# --------------------------------------------------------------------------- server side


def build_app(way: str, events: int) -> object:
    """The benchmarked app; only the router's ``route_class`` depends on ``way``."""
    from fastapi import APIRouter, FastAPI
    from fastapi.responses import PlainTextResponse
    from fastapi.sse import EventSourceResponse

    tick = Tick(v=VALUE)
    if way == "ssehub":
        from ssehub.fastapi import EventSourceRoute

        router = APIRouter(route_class=EventSourceRoute)
    else:
        router = APIRouter()

    @router.get("/stream", response_class=EventSourceResponse)
    async def stream(n: int = events) -> AsyncIterator[Tick]:
        for _ in range(n):
            yield tick

    @router.get("/cpu", response_class=PlainTextResponse)
    async def cpu() -> str:
        return repr(time.process_time())

    app = FastAPI(openapi_url=None)
    app.include_router(router)
    return app


def serve(way: str, port: int, events: int) -> None:
    import uvicorn

    os.sched_setaffinity(0, {0})
    config = uvicorn.Config(
        build_app(way, events),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    with contextlib.suppress(KeyboardInterrupt):
        # uvicorn re-raises the SIGINT that stopped it once it has shut down cleanly.
        uvicorn.Server(config).run()


# --------------------------------------------------------------------------- client side


@contextlib.contextmanager
def servers(events: int) -> Iterator[dict[str, int]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for way in WAYS:
            ports[way] = free_port()
            cmd = ["taskset", "-c", "0", sys.executable, __file__, "--serve", way]
            cmd += ["--port", str(ports[way]), "--events", str(events)]
            procs[way] = subprocess.Popen(cmd)
        for way in WAYS:
            wait_until_listening(ports[way], procs[way])
        yield ports
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="5 000 events, one round")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--serve", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.events)
        return

    events = 5_000 if args.quick else args.events
    rounds = 1 if args.quick else args.rounds
    os.sched_setaffinity(0, {1})  # the client; the servers are on core 0
    print(describe_environment() + f", fastapi {version('fastapi')}")
    print(f"{events:,} events of {FRAME_BYTES} bytes per stream, {rounds} rounds")
    with servers(events) as ports:
        for way in WAYS:  # warm-up: imports, first-request paths, TCP
            measure(ports[way], min(events, 5_000))
        results = alternate(
            rounds, [(way, lambda port=ports[way]: measure(port, events)) for way in WAYS]
        )

    ours, theirs = results["ssehub"], results["fastapi.sse"]
    rows = []
    for key, label, better in (
        ("events_per_s", "events/s (client)", "higher"),
        ("cpu_us_per_event", "server CPU µs/event", "lower"),
    ):
        a, b = median(ours, key), median(theirs, key)
        ratio = a / b if better == "higher" else b / a
        rows.append([label, f"{a:,.2f}", f"{b:,.2f}", f"{ratio:.2f}x"])
    print_table(
        f"FastAPI path operation, one stream, {events:,} x {FRAME_BYTES}-byte events, "
        f"median of {rounds} rounds",
        ["metric", "ssehub (EventSourceRoute)", "fastapi.sse", "ssehub advantage"],
        rows,
    )


if __name__ == "__main__":
    main()
