"""Hub fan-out benchmark: ``ssehub serve`` vs a broadcaster built like sse-starlette's example.

1 000 subscribers on one topic. Two phases per round, on the same subscribers:

* burst: 500 events (``--events``; the issue says 2 000) of about 100 bytes published over 4
  keep-alive connections (``--window``), each sending its next event as soon as its previous
  one was answered ("as fast as the hub accepts them"; with one connection the server would
  sit idle during every round trip). Measured: deliveries/s (subscribers x events / time from the
  first publish to the last delivery), server CPU time per delivery (``/proc/<pid>/stat``),
  publish-to-receive latency p50/p99 over every delivery.
* paced: 20 events/s offered (20 000 deliveries/s) for 10 s, each event sent at its scheduled
  time on a free connection of the pool; publish-to-receive p50/p99, and the rate achieved
  (below 20 when every connection waits for an answer).

Both servers run under uvicorn with uvloop and httptools, one worker, default settings, pinned
to core 0; this load generator is pinned to core 1 and reports its own CPU use so that one can
see it is not the bottleneck. Rounds alternate which server goes first; medians are reported.
The baseline is ``benchmarks/baseline_broadcaster.py``.

``--middleware`` compares the hub app under uvicorn bare and behind a pass-through ASGI
middleware that wraps ``send`` (``_hub_app_server.py``) instead: the cost of being an ordinary
ASGI app that any middleware may wrap.

Run: ``uv run python benchmarks/bench_hub_fanout.py [--rounds N] [--quick] [--middleware]``
(``--quick``: 50 subscribers, 50 events, 1 s paced; a smoke run of a few seconds). The default
burst is 500 events so that three rounds finish in minutes; ``--events 2000`` is the issue's
size (a baseline round then takes minutes by itself); per-delivery figures do not depend on it.
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
    Server,
    connect_many,
    make_data,
    percentile,
    pin_load_generator,
    raise_file_limit,
    running_server,
)

__all__ = ["main"]


async def _burst(pool: list[Publisher], events: int, first: int) -> None:
    # Every publisher connection sends its next event as soon as its previous one is
    # answered, so the server always has a publish to work on while the others travel.
    sequences = iter(range(first, first + events))

    async def worker(publisher: Publisher) -> None:
        for seq in sequences:
            await publisher.publish(make_data(seq))

    await asyncio.gather(*(worker(publisher) for publisher in pool))


async def _paced(pool: list[Publisher], rate: float, seconds: float, first: int) -> float:
    """Offer ``rate`` events/s on an absolute schedule; return the rate actually offered.

    Each event goes out at its time on a free connection of ``pool``, so a slow answer does
    not delay the next event (until every connection is busy).
    """
    count = round(rate * seconds)
    free: asyncio.Queue[Publisher] = asyncio.Queue()
    for publisher in pool:
        free.put_nowait(publisher)

    async def publish(publisher: Publisher, seq: int) -> None:
        await publisher.publish(make_data(seq))
        free.put_nowait(publisher)

    tasks = []
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(publish(await free.get(), first + i)))
    offered_s = time.monotonic() - start
    await asyncio.gather(*tasks)
    return (count - 1) / offered_s if count > 1 and offered_s > 0 else rate


async def _wait_delivered(received: Received, timeout: float) -> float:
    """Wait for every delivery; return the fraction that arrived within ``timeout``."""
    try:
        await asyncio.wait_for(received.done.wait(), timeout)
    except TimeoutError:
        print(
            f"    only {received.count:,} of {received.target:,} deliveries after {timeout:.0f} s",
            flush=True,
        )
    return received.count / received.target if received.target else 1.0


async def measure(
    server: Server, subscribers: int, events: int, paced_seconds: float, window: int
) -> dict[str, float]:
    """One round against one server: burst, then paced; returns the measurements."""
    received = Received()
    received.reset(0)
    subs = await connect_many(server.port, subscribers, received)
    pool = [await Publisher.open(server.port) for _ in range(window)]
    try:
        await pool[0].wait_connections(subscribers)
        # burst
        received.reset(subscribers * events)
        cpu0, client0, t0 = server.cpu_seconds(), time.process_time(), time.monotonic()
        await _burst(pool, events, first=0)
        publish_s = time.monotonic() - t0
        burst_delivered = await _wait_delivered(received, timeout=max(120.0, events * 0.5))
        elapsed = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
        client_cpu = time.process_time() - client0
        deliveries = subscribers * events
        burst_latency = received.latencies_ns
        shed = sum(sub.ended.is_set() for sub in subs)
        # paced
        offered = round(20 * paced_seconds)
        received.reset(subscribers * offered)
        offered_rate = await _paced(pool, 20.0, paced_seconds, first=events)
        paced_delivered = await _wait_delivered(received, timeout=120.0)
        paced_latency = received.latencies_ns
        # Concurrent publishes may be stored in any order; each exactly once is what counts.
        checked = subs[0].sequences
        complete = burst_delivered == paced_delivered == 1.0
        if complete and sorted(checked) != list(range(events + offered)):
            raise SystemExit(
                f"{server.kind}: subscriber 0 saw {len(checked)} events, not each once"
            )
        shed += sum(sub.ended.is_set() for sub in subs)
    finally:
        for sub in subs:
            sub.close()
        for publisher in pool:
            publisher.close()
    return {
        "deliveries_per_s": deliveries / elapsed,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
        "p50_ms": percentile(burst_latency, 0.50) / 1e6,
        "p99_ms": percentile(burst_latency, 0.99) / 1e6,
        "paced_p50_ms": percentile(paced_latency, 0.50) / 1e6,
        "paced_p99_ms": percentile(paced_latency, 0.99) / 1e6,
        "paced_offered_per_s": offered_rate,
        "publishes_per_s": events / publish_s,
        "client_cpu_pct": client_cpu / elapsed * 100,
        "shed": float(shed),
        # Below 1: deliveries still missing when the wait gave up (latencies are then those
        # of the deliveries that did arrive, an underestimate).
        "delivered_fraction": min(burst_delivered, paced_delivered),
    }


async def _settle(server: Server) -> None:
    # The previous round's connections are gone before the next round starts.
    publisher = await Publisher.open(server.port)
    try:
        await publisher.wait_connections(0)
    finally:
        publisher.close()


def run_round(
    server: Server, subscribers: int, events: int, paced_seconds: float, window: int
) -> dict[str, float]:
    """One measurement in a fresh event loop (uvloop)."""
    result = uvloop.run(measure(server, subscribers, events, paced_seconds, window))
    uvloop.run(_settle(server))
    return result


ROWS = (
    ("deliveries_per_s", "deliveries/s (burst)", "higher", "{:,.0f}"),
    ("cpu_us_per_delivery", "server CPU µs/delivery", "lower", "{:.2f}"),
    ("p50_ms", "burst latency p50 (ms)", "lower", "{:.1f}"),
    ("p99_ms", "burst latency p99 (ms)", "lower", "{:.1f}"),
    ("paced_p50_ms", "20 events/s: latency p50 (ms)", "lower", "{:.2f}"),
    ("paced_p99_ms", "20 events/s: latency p99 (ms)", "lower", "{:.2f}"),
    ("paced_offered_per_s", "20 events/s: rate achieved", "info", "{:.1f}"),
    ("publishes_per_s", "publishes accepted/s (burst)", "higher", "{:,.0f}"),
    ("client_cpu_pct", "load generator CPU % (burst)", "info", "{:.0f}"),
    ("delivered_fraction", "fraction delivered before the wait gave up", "info", "{:.3f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="tiny counts, a few seconds")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--events", type=int, default=500, help="events per burst (the issue's size: 2000)"
    )
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=4, help="publish connections in flight")
    parser.add_argument(
        "--middleware",
        action="store_true",
        help="compare the hub app under uvicorn bare and behind a pass-through middleware "
        "that wraps send (instead of ssehub against the baseline)",
    )
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.events, args.paced_seconds = 50, 50, 1.0
        args.rounds = 1
    raise_file_limit()
    pinning = pin_load_generator()
    print(describe_environment())
    print(pinning)
    print(
        f"{args.subscribers:,} subscribers, burst of {args.events:,} events of ~100 bytes, "
        f"then 20 events/s for {args.paced_seconds:g} s; {args.window} publish connections; "
        f"{args.rounds} rounds"
    )
    kinds = ("ssehub-app", "ssehub-app+middleware") if args.middleware else KINDS
    with running_server(kinds[0]) as ours, running_server(kinds[1]) as theirs:
        servers = {kinds[0]: ours, kinds[1]: theirs}
        for kind in kinds:  # warm-up: imports, first-request paths
            run_round(servers[kind], min(args.subscribers, 50), 20, 0.1, args.window)
        results = alternate(
            args.rounds,
            [
                (
                    kind,
                    lambda s=servers[kind]: run_round(
                        s, args.subscribers, args.events, args.paced_seconds, args.window
                    ),
                )
                for kind in kinds
            ],
        )
    rows = []
    for key, label, better, fmt in ROWS:
        a, b = median(results[kinds[0]], key), median(results[kinds[1]], key)
        if better == "higher":
            ratio = f"{a / b:.2f}x" if b else "-"
        elif better == "lower":
            ratio = f"{b / a:.2f}x" if a else "-"
        else:
            ratio = ""
        rows.append([label, fmt.format(a), fmt.format(b), ratio])
    shed = sum(r["shed"] for rs in results.values() for r in rs)
    print_table(
        f"Fan-out, {args.subscribers:,} subscribers x {args.events:,} events, "
        f"median of {args.rounds} rounds",
        (
            ["metric", "bare", "behind a pass-through middleware", "bare / wrapped"]
            if args.middleware
            else ["metric", "ssehub", "baseline (sse-starlette)", "ssehub advantage"]
        ),
        rows,
    )
    print(f"\nstreams ended by a server during measurement: {shed:.0f}")


if __name__ == "__main__":
    main()
