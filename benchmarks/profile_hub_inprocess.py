"""The hub's CPU per delivery without sockets: a profile of the Python side of fan-out.

Builds the hub app around a broker, opens ``--subscribers`` event streams by calling the ASGI
app directly (the ``send`` callable only counts frames), publishes ``--events`` events one at a
time (each waits until every subscriber has received it, as separate publishes over HTTP do)
and prints the CPU time per delivery. ``--profile`` prints the top of a cProfile;
``--gc-threshold N`` sets ``gc.set_threshold(N, 20, 100)`` first, ``--no-gc`` disables the
cyclic collector: together they show what the collector costs with many open streams.

Run: ``uv run python benchmarks/profile_hub_inprocess.py [--subscribers N] [--events N]``
(``--quick``: 50 subscribers, 20 events).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import pstats
import time
from typing import Any

import uvloop

from ssehub.broker import Broker
from ssehub.hub import HubSettings, create_app

__all__ = ["main"]


def _scope(app: object) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"topic=bench",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "app": app,
    }


async def run(subscribers: int, events: int, profile: bool) -> float:
    """Return the CPU seconds per delivery (and print a profile when asked)."""
    delivered = 0
    started = 0
    all_started = asyncio.Event()
    leave = asyncio.Event()
    async with Broker("memory://") as broker:
        # All streams come from one address: lift the stream limits where the hub has them.
        names = {field.name for field in dataclasses.fields(HubSettings)}
        limits = {"max_connections", "max_connections_per_address"} & names
        app = create_app(HubSettings(**dict.fromkeys(limits, 10**6)), broker=broker)

        async def receive() -> dict[str, Any]:
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal delivered, started
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    raise SystemExit(f"GET /events answered {message['status']}")
                started += 1
                if started == subscribers:
                    all_started.set()
            else:
                delivered += message.get("body", b"").count(b"\n\n")

        streams = [asyncio.create_task(app(_scope(app), receive, send)) for _ in range(subscribers)]
        await asyncio.wait_for(all_started.wait(), 60)
        await asyncio.sleep(0.1)  # let the opening comments go out before counting
        base = delivered
        profiler = cProfile.Profile() if profile else None
        cpu0 = time.process_time()
        if profiler is not None:
            profiler.enable()
        for number in range(1, events + 1):
            await broker.publish("bench", "x" * 100)
            while delivered - base < number * subscribers:
                await asyncio.sleep(0)  # the streams run; then the next publish
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu0
        leave.set()
        await asyncio.wait_for(asyncio.gather(*streams), 60)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return cpu / (delivered - base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 subscribers, 20 events")
    parser.add_argument("--profile", action="store_true", help="print a cProfile")
    parser.add_argument("--gc-threshold", type=int, help="gc.set_threshold(N, 20, 100)")
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic collector")
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.events = 50, 20
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, 20, 100)
    if args.no_gc:
        gc.disable()
    per_delivery = uvloop.run(run(args.subscribers, args.events, args.profile))
    print(
        f"{args.subscribers} subscribers x {args.events} events: "
        f"{per_delivery * 1e6:.2f} µs of CPU per delivery (no sockets)"
    )


if __name__ == "__main__":
    main()
