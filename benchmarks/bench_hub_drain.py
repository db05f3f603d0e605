"""Hub shutdown benchmark: how long a server takes to exit with many open streams.

Per round and server (a fresh server process each time): open ``--connections`` idle streams
(5 000 by default) on one topic, wait until the server counts all of them, send it SIGINT (as
a process manager stopping it would) and time until the process has exited. Also counted: the
streams whose response ended cleanly (the chunked body's last chunk arrived) rather than by
the connection being closed, and the server's exit status.

This is where a cost per stream paid at shutdown shows up: the hub's drain ends every stream
at once, so anything quadratic in the number of streams (an earlier version moved each
stream's alarm in a heap with ``list.remove``: 4.7 s for 5 000 streams) turns into seconds.

Run: ``uv run python benchmarks/bench_hub_drain.py [--rounds N] [--connections N] [--quick]``
(``--quick``: 200 streams, one round, a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import uvloop
from _common import alternate, describe_environment, median, print_table
from _loadgen import (
    KINDS,
    TOPIC,
    Publisher,
    Received,
    Subscriber,
    connect,
    pin_load_generator,
    raise_file_limit,
    running_server,
)

__all__ = ["main"]

EXIT_TIMEOUT = 60.0  # seconds a server may take to exit before the round counts as failed


class _EndingSubscriber(Subscriber):
    """A subscriber that tells a clean end of the body from a closed connection."""

    complete = False

    def on_message_complete(self) -> None:
        self.complete = True
        super().on_message_complete()


async def _measure(kind: str, connections: int) -> dict[str, float]:
    with running_server(kind) as server:
        received = Received(record=False)
        received.reset(0)
        publisher = await Publisher.open(server.port)
        limit = asyncio.Semaphore(200)
        path = f"/events?topic={TOPIC}"

        async def one() -> _EndingSubscriber:
            async with limit:
                subscriber = _EndingSubscriber(path, received)
                await connect(server.port, subscriber)
                return subscriber

        subs = list(await asyncio.gather(*(one() for _ in range(connections))))
        try:
            await publisher.wait_connections(connections, timeout=120)
            publisher.close()
            start = time.monotonic()
            server.proc.send_signal(signal.SIGINT)
            deadline = start + EXIT_TIMEOUT
            while server.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # a harness polling a child process, bounded above
            exit_s = time.monotonic() - start
            returncode = server.proc.poll()
            # The clients may still be reading the last bytes: give them a moment.
            await asyncio.wait_for(asyncio.gather(*(sub.ended.wait() for sub in subs)), timeout=10)
        finally:
            for sub in subs:
                sub.close()
    return {
        "exit_s": exit_s if returncode is not None else float("inf"),
        "clean_fraction": sum(sub.complete for sub in subs) / connections,
        "exit_status": float(-1 if returncode is None else returncode),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="200 streams, one round")
    parser.add_argument("--connections", type=int, default=5_000)
    args = parser.parse_args()
    if args.quick:
        args.connections, args.rounds = 200, 1
    limit = raise_file_limit()
    if args.connections + 64 > limit:
        raise SystemExit(f"the file limit is {limit}: use --connections {limit - 64}")
    pinning = pin_load_generator()
    print(describe_environment())
    print(pinning)
    print(f"{args.connections:,} open streams, then SIGINT; file limit {limit}")
    results = alternate(
        args.rounds,
        [(kind, lambda k=kind: uvloop.run(_measure(k, args.connections))) for kind in KINDS],
    )
    rows = [
        [
            "time from SIGINT to exit (s)",
            f"{median(results['ssehub'], 'exit_s'):.2f}",
            f"{median(results['baseline'], 'exit_s'):.2f}",
        ],
        [
            "streams ended with a clean end of body",
            f"{median(results['ssehub'], 'clean_fraction'):.3f}",
            f"{median(results['baseline'], 'clean_fraction'):.3f}",
        ],
        [
            "exit status (worst round)",
            f"{max(r['exit_status'] for r in results['ssehub']):.0f}",
            f"{max(r['exit_status'] for r in results['baseline']):.0f}",
        ],
    ]
    print_table(
        f"Shutdown with {args.connections:,} open streams, median of {args.rounds} rounds",
        ["metric", "ssehub", "baseline (sse-starlette)"],
        rows,
    )


if __name__ == "__main__":
    main()
