"""Hub slow-consumer benchmark: one subscriber stops reading while 100 others get 100 events/s.

Per server (default settings, uvloop, httptools, pinned to core 0; load generator on core 1):

1. control: 100 subscribers, 100 events/s of 2 000 bytes (``--data-bytes``) for
   ``--control-seconds``; the subscribers' publish-to-receive p50/p99. Events are that large
   so that the slow stream's backlog outgrows the kernel's socket buffers (up to 4 MiB on
   Linux) within the phase: until then no server can notice that a client stopped reading.
2. slow: the same 100 plus one subscriber with a small receive buffer that reads its response
   headers, then stops reading; 100 events/s for ``--seconds``. Sampled every 0.5 s: the
   server's RSS and its count of open streams. Reported: the 100's p50/p99 (compared with the
   control), the RSS at the start, its peak and at the end, and when the slow stream was shed
   (the server stopped counting it; other streams the server ended are reported too).
3. catch-up: as soon as the server has shed it (or at the end of the phase if it never does),
   the slow subscriber reads again until its stream ends, then reconnects with
   ``Last-Event-ID`` (the id of the last event it read); events keep flowing until the end of
   the phase and 2 s more. Reported: how many of the events published after its first one it
   never received (0 means it caught up completely, from history).

Run: ``uv run python benchmarks/bench_hub_slow.py [--seconds S] [--quick]``
(``--quick``: 0.5 s control, 1 s slow phase: shows that the script works; no server sheds a
stream that fast with its default settings, so the output then reports "never").
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop
from _common import describe_environment, print_table
from _loadgen import (
    KINDS,
    TOPIC,
    Publisher,
    Received,
    Server,
    Subscriber,
    connect,
    connect_many,
    make_data,
    percentile,
    pin_load_generator,
    raise_file_limit,
    running_server,
)

__all__ = ["main"]

RATE = 100.0
OTHERS = 100
SAMPLE_SECONDS = 0.5
CATCH_UP_SECONDS = 2.0


class _Feed:
    """Publishes at ``RATE`` on an absolute schedule, numbering events from 0."""

    def __init__(self, publisher: Publisher, size: int) -> None:
        self.publisher = publisher
        self.size = size
        self.next_seq = 0

    async def run(self, seconds: float) -> None:
        count = round(RATE * seconds)
        start = time.monotonic()
        for i in range(count):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.publisher.publish(make_data(self.next_seq, self.size))
            self.next_seq += 1


async def _sample(
    server: Server, monitor: Publisher, others: list[Subscriber], stop: asyncio.Event, into: dict
) -> None:
    start = time.monotonic()
    while not stop.is_set():
        into["rss"].append(server.rss_bytes())
        count = await monitor.connections()
        # Shed: the server no longer counts the slow stream (others it ended count too).
        still_open = sum(not other.ended.is_set() for other in others)
        if count <= still_open and into["shed_at"] is None:
            into["shed_at"] = time.monotonic() - start
            into["shed"].set()
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except TimeoutError:
            pass


async def _measure(
    server: Server, control_seconds: float, seconds: float, catch_up_seconds: float, size: int
) -> dict[str, float]:
    received = Received()
    received.reset(0)
    others = await connect_many(server.port, OTHERS, received)
    publisher = await Publisher.open(server.port)
    monitor = await Publisher.open(server.port)
    feed = _Feed(publisher, size)
    slow: Subscriber | None = None
    again: Subscriber | None = None
    try:
        await publisher.wait_connections(OTHERS)
        # 1. control
        received.reset(0)
        await feed.run(control_seconds)
        control = received.latencies_ns
        # 2. slow
        slow_received = Received(record=False)
        slow = Subscriber(f"/events?topic={TOPIC}", slow_received, checked=True)
        await connect(server.port, slow, rcvbuf=4096)
        assert slow.transport is not None
        slow.transport.pause_reading()
        await publisher.wait_connections(OTHERS + 1)
        received.reset(0)
        samples: dict = {"rss": [], "shed_at": None, "shed": asyncio.Event()}
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(server, monitor, others, stop, samples))
        first_seq = feed.next_seq
        publishing = asyncio.create_task(feed.run(seconds))
        shed = asyncio.create_task(samples["shed"].wait())
        await asyncio.wait([publishing, shed], return_when=asyncio.FIRST_COMPLETED)
        shed.cancel()
        # 3. catch up. A real slow client notices that its stream ended once it has read what
        # was in flight: read again, then reconnect with the last id read, as a browser does.
        slow.transport.resume_reading()
        ended = True
        try:
            # A shed stream ends once its buffered bytes are read; one never shed does not.
            await asyncio.wait_for(slow.ended.wait(), 15 if samples["shed"].is_set() else 0.5)
        except TimeoutError:
            ended = False  # the server has not ended the stream: give up on it
        last_id = slow.last_id
        slow.close()
        again = Subscriber(
            f"/events?topic={TOPIC}", slow_received, checked=True, last_event_id=last_id
        )
        await connect(server.port, again)
        await publishing
        stop.set()
        await sampler
        with_slow = received.latencies_ns
        await feed.run(catch_up_seconds)
        last_seq = feed.next_seq - 1
        deadline = time.monotonic() + 10
        while (not again.sequences or again.sequences[-1] < last_seq) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)  # the tail of the catch-up stream, bounded
        seen = set(slow.sequences) | set(again.sequences)
        missed = sum(1 for seq in range(first_seq, last_seq + 1) if seq not in seen)
        duplicates = len(slow.sequences) + len(again.sequences) - len(seen)
    finally:
        for sub in [*others, slow, again]:
            if sub is not None:
                sub.close()
        publisher.close()
        monitor.close()
    rss = samples["rss"]
    return {
        "control_p50_ms": percentile(control, 0.5) / 1e6,
        "control_p99_ms": percentile(control, 0.99) / 1e6,
        "p50_ms": percentile(with_slow, 0.5) / 1e6,
        "p99_ms": percentile(with_slow, 0.99) / 1e6,
        "rss_start_mib": rss[0] / 2**20,
        "rss_peak_mib": max(rss) / 2**20,
        "rss_end_mib": rss[-1] / 2**20,
        "shed_after_s": -1.0 if samples["shed_at"] is None else samples["shed_at"],
        "stream_ended": float(ended),
        "events_published_while_slow": float(last_seq - first_seq + 1),
        "missed": float(missed),
        "duplicates": float(duplicates),
        "others_ended": float(sum(other.ended.is_set() for other in others)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    parser.add_argument("--control-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the slow phase")
    parser.add_argument(
        "--data-bytes",
        type=int,
        default=2000,
        help="event size: large enough that kernel socket buffers (4 MiB) fill within the phase",
    )
    args = parser.parse_args()
    catch_up = CATCH_UP_SECONDS
    if args.quick:
        args.control_seconds, args.seconds, catch_up = 0.5, 1.0, 0.5
    raise_file_limit()
    pinning = pin_load_generator()
    print(describe_environment())
    print(pinning)
    print(
        f"{OTHERS} subscribers at {RATE:g} events/s of {args.data_bytes} bytes; "
        f"control {args.control_seconds:g} s, "
        f"then one subscriber stops reading for {args.seconds:g} s"
    )
    results = {}
    for kind in KINDS:
        with running_server(kind) as server:
            results[kind] = uvloop.run(
                _measure(server, args.control_seconds, args.seconds, catch_up, args.data_bytes)
            )
        shown = ", ".join(f"{k}={v:,.2f}" for k, v in results[kind].items())
        print(f"  {kind:<10} {shown}", flush=True)
    rows = []
    for key, label in (
        ("control_p50_ms", "others' p50 without the slow one (ms)"),
        ("control_p99_ms", "others' p99 without the slow one (ms)"),
        ("p50_ms", "others' p50 with the slow one (ms)"),
        ("p99_ms", "others' p99 with the slow one (ms)"),
        ("rss_start_mib", "server RSS at the start (MiB)"),
        ("rss_peak_mib", "server RSS peak (MiB)"),
        ("rss_end_mib", "server RSS at the end (MiB)"),
        ("shed_after_s", "slow stream shed after (s; -1: never)"),
        ("events_published_while_slow", "events published since its first"),
        ("missed", "events it never received after reconnecting"),
        ("duplicates", "events it received twice"),
        ("others_ended", "other streams the server ended"),
    ):
        rows.append([label, f"{results['ssehub'][key]:,.2f}", f"{results['baseline'][key]:,.2f}"])
    print_table(
        f"Slow consumer, {OTHERS} others at {RATE:g} events/s, slow phase {args.seconds:g} s",
        ["metric", "ssehub", "baseline (sse-starlette)"],
        rows,
    )


if __name__ == "__main__":
    main()
