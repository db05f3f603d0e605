"""Where fan-out latency comes from: per event, when the first and the last subscriber got it.

Not a comparison (``bench_hub_fanout.py`` is): a probe of ``ssehub serve`` alone. 1 000
subscribers (``N``), ``RATE`` events/s for ``SECONDS`` s, one publish connection; for every
event it records the publish round trip and each subscriber's publish-to-receive time, then
prints the medians of the publish round trip, of the first and of the last arrival, and the
p50/p99 over all deliveries. A last arrival far above the first means the time goes into
writing to every connection (the fan-out itself), not into queueing.

Run: ``uv run python benchmarks/probe_fanout_spread.py [--subscribers N] [--rate R]
[--seconds S] [--quick]`` (defaults 1000, 20, 5; ``--quick``: 50 subscribers for 1 s). Set
``SSEHUB_BENCH_SRC`` to measure an exported tree, as for the other scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import uvloop
from _loadgen import (
    TOPIC,
    Publisher,
    Received,
    Subscriber,
    connect,
    make_data,
    percentile,
    pin_load_generator,
    raise_file_limit,
    running_server,
)

__all__ = ["main"]

_SEQ = re.compile(rb"data: n=(\d+) t=(\d+) ")
_arrivals: dict[int, list[float]] = {}


class _Timed(Subscriber):
    """A subscriber that also keeps, per event, its publish-to-receive time in ms."""

    def on_body(self, body: bytes) -> None:
        now = time.monotonic_ns()
        for seq, stamp in _SEQ.findall(body):
            _arrivals.setdefault(int(seq), []).append((now - int(stamp)) / 1e6)
        super().on_body(body)


async def main(subscribers: int = 1000, rate: int = 20, seconds: int = 5) -> None:
    """Run the probe and print its summary."""
    raise_file_limit()
    print(pin_load_generator())
    with running_server("ssehub") as server:
        received = Received()
        received.reset(0)
        limit = asyncio.Semaphore(100)

        async def one() -> Subscriber:
            async with limit:
                return await connect(server.port, _Timed(f"/events?topic={TOPIC}", received))

        subs = await asyncio.gather(*(one() for _ in range(subscribers)))
        publisher = await Publisher.open(server.port)
        await publisher.wait_connections(subscribers)
        count = rate * seconds
        round_trips: list[float] = []
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.monotonic_ns()
            await publisher.publish(make_data(i))
            round_trips.append((time.monotonic_ns() - sent) / 1e6)
        await asyncio.sleep(1)  # the last event's deliveries, bounded above by the p99
        firsts = [min(_arrivals[i]) for i in range(count) if i in _arrivals]
        lasts = [max(_arrivals[i]) for i in range(count) if i in _arrivals]
        every = [value for i in range(count) for value in _arrivals.get(i, ())]
        missing = count * subscribers - len(every)
        print(f"publish round trip median {statistics.median(round_trips):.1f} ms")
        print(
            f"first arrival median {statistics.median(firsts):.1f} ms, "
            f"last arrival median {statistics.median(lasts):.1f} ms (max {max(lasts):.1f})"
        )
        print(
            f"all deliveries: p50 {percentile(every, 0.5):.1f} ms, "
            f"p99 {percentile(every, 0.99):.1f} ms; {missing} not received"
        )
        for sub in subs:
            sub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=20, help="events/s offered")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="50 subscribers for 1 s")
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.seconds = 50, 1
    uvloop.run(main(args.subscribers, args.rate, args.seconds))
