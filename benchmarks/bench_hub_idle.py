"""Hub idle-connection benchmark: server memory per open, idle event stream.

Per round and server (a fresh server process each time, since freed memory is not returned to
the operating system and would flatter a second measurement): open 100 warm-up streams, read
the server's resident set size, open ``--connections`` more streams (10 000 by default) on one
topic, wait until the server counts all of them, let it settle, read the RSS again. The
difference divided by the number of streams is the cost of one idle connection: the socket's
user-space state in uvicorn, the ASGI request, the response's tasks, and the subscription.

The file limit is raised to the hard limit (``RLIMIT_NOFILE``) for this process and the servers
(20 000 on the machine of RESULTS.md: each side of 10 000 connections holds 10 000 descriptors).
Servers pinned to core 0, this process to core 1, default settings, uvloop and httptools.

Run: ``uv run python benchmarks/bench_hub_idle.py [--rounds N] [--connections N] [--quick]``
(``--quick``: 200 streams, one round, a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop
from _common import alternate, describe_environment, median, print_table
from _loadgen import (
    KINDS,
    Publisher,
    Received,
    connect_many,
    pin_load_generator,
    raise_file_limit,
    running_server,
)

__all__ = ["main"]

WARM = 100
SETTLE_SECONDS = 1.0


async def _measure(kind: str, connections: int) -> dict[str, float]:
    with running_server(kind) as server:
        received = Received(record=False)
        received.reset(0)
        publisher = await Publisher.open(server.port)
        subs = []
        try:
            subs += await connect_many(server.port, WARM, received)
            await publisher.wait_connections(WARM)
            await asyncio.sleep(SETTLE_SECONDS)  # a benchmark settling, not a test waiting
            rss0 = server.rss_bytes()
            start = time.monotonic()
            subs += await connect_many(server.port, connections, received, concurrency=200)
            await publisher.wait_connections(WARM + connections, timeout=120)
            connect_s = time.monotonic() - start
            await asyncio.sleep(SETTLE_SECONDS)
            rss1 = server.rss_bytes()
            ended = sum(sub.ended.is_set() for sub in subs)
        finally:
            for sub in subs:
                sub.close()
            publisher.close()
    return {
        "kib_per_connection": (rss1 - rss0) / connections / 1024,
        "rss_mib": rss1 / 2**20,
        "connects_per_s": connections / connect_s,
        "ended": float(ended),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="200 streams, one round")
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    if args.quick:
        args.connections, args.rounds = 200, 1
    limit = raise_file_limit()
    # Each side needs one descriptor per stream plus a few; keep a margin for imports and pipes.
    if args.connections + WARM + 64 > limit:
        raise SystemExit(f"the file limit is {limit}: use --connections {limit - WARM - 64}")
    pinning = pin_load_generator()
    print(describe_environment())
    print(pinning)
    print(f"{args.connections:,} idle streams (after {WARM} warm-up ones); file limit {limit}")
    results = alternate(
        args.rounds,
        [(kind, lambda k=kind: uvloop.run(_measure(k, args.connections))) for kind in KINDS],
    )
    rows = []
    for key, label, better, fmt in (
        ("kib_per_connection", "server RSS per stream (KiB)", "lower", "{:.1f}"),
        ("rss_mib", "server RSS with all streams open (MiB)", "lower", "{:.0f}"),
        ("connects_per_s", "streams opened/s", "higher", "{:,.0f}"),
    ):
        a, b = median(results["ssehub"], key), median(results["baseline"], key)
        ratio = a / b if better == "higher" else b / a
        rows.append([label, fmt.format(a), fmt.format(b), f"{ratio:.2f}x"])
    print_table(
        f"Idle streams, {args.connections:,} open, median of {args.rounds} rounds",
        ["metric", "ssehub", "baseline (sse-starlette)", "ssehub advantage"],
        rows,
    )
    ended = sum(r["ended"] for rs in results.values() for r in rs)
    print(f"\nstreams ended by a server during measurement: {ended:.0f}")


if __name__ == "__main__":
    main()
