"""Redis scale-out benchmarks: publish throughput, fan-out over one or two hubs, mass resume.

Three measurements, each with alternating rounds and medians (``_common.alternate``):

* publish: events/s that one hub accepts, ``POST /publish`` one after another over one
  keep-alive connection (each waits for its answer), memory broker vs Redis broker.
* fan-out: S subscribers (1 000) on one topic, split evenly over the hubs; E events (300)
  published by four concurrent keep-alive publishers spread over the hubs. Deliveries/s
  (S x E / time from the first publish to the last delivery), publish-to-receive p50/p99, and
  CPU seconds per 1 000 deliveries of the hubs and of Redis. Configurations: one hub process on
  Redis vs two hub processes sharing Redis (the scaling factor is the ratio of their
  deliveries/s), and one hub on the memory broker for reference.
* resume: R clients (1 000) connect at once with a ``Last-Event-ID`` B events (1 000) behind,
  on a hub that never saw them. Time until every client has all B events, and correctness:
  every client gets exactly the B events (a sample of 20 parses every byte and checks the exact
  sequence), then exactly one live event published afterwards (no duplicate, no gap). Memory
  vs Redis.

Pinning (``taskset``) on a 2-core machine: hub A on core 0; the load generator and a private
``redis-server`` (started by this script on a free port, no persistence) on core 1; in the
two-hub configuration hub B also runs on core 1, so it shares that core with the load generator
and Redis: the scaling factor measured here is a lower bound of what two machines would give.
The hubs run ``ssehub serve`` with default settings except the per-address connection limit
(every benchmark client comes from 127.0.0.1).

Run: ``uv run python benchmarks/bench_redis.py [--rounds N] [--quick]``
(``--quick``: 100 subscribers, 100 events, 100 resuming clients; about a minute; the full
run takes about 15 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvloop
from _common import alternate, describe_environment, median, parse_args, print_table
from _loadgen import (
    TOPIC,
    Publisher,
    Received,
    Subscriber,
    can_pin,
    connect,
    make_data,
    percentile,
    pin_load_generator,
    raise_file_limit,
)

__all__ = ["main"]

HUB_CORES = (0, 1)  # hub A, hub B
SIDE_CORE = 1  # load generator and Redis
PUBLISHERS = 4
CHECKED = 20  # resuming clients that parse every byte


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if can_pin() else []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start within 30 s") from None
            time.sleep(0.05)  # a harness waiting for a child to bind, bounded above
        else:
            return


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A private redis-server on core 1, no persistence; yields (url, pid)."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [
            *_pin(SIDE_CORE),
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            _wait_port(port, proc, "redis-server")
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            _stop(proc)


@dataclass
class Hub:
    port: int
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def hubs(broker: str, count: int) -> Iterator[list[Hub]]:
    """Start ``count`` ``ssehub serve`` processes on ``broker`` (hub i pinned to HUB_CORES[i])."""
    env = {**os.environ, "SSEHUB_MAX_CONNECTIONS_PER_ADDRESS": "100000"}
    started: list[Hub] = []
    try:
        for index in range(count):
            port = _free_port()
            command = [
                *_pin(HUB_CORES[index]),
                sys.executable,
                "-m",
                "ssehub.cli",
                "serve",
                "--port",
                str(port),
                "--broker",
                broker,
                "--log-level",
                "warning",
            ]
            started.append(Hub(port, subprocess.Popen(command, env=env)))
        for hub in started:
            _wait_port(hub.port, hub.proc, "ssehub serve")
        yield started
    finally:
        for hub in started:
            _stop(hub.proc)


def _redis_broker(url: str) -> str:
    return f"{url}?prefix=bench-{uuid.uuid4().hex[:8]}"  # a clean data set per run


# --------------------------------------------------------------------------- publish


async def _publish_run(broker: str, events: int) -> dict[str, float]:
    with hubs(broker, 1) as (hub,):
        publisher = await Publisher.open(hub.port)
        try:
            for seq in range(20):  # warm-up: connections, script load, JIT-free but cached
                await publisher.publish(make_data(seq))
            started = time.perf_counter()
            for seq in range(events):
                await publisher.publish(make_data(seq))
            elapsed = time.perf_counter() - started
        finally:
            publisher.close()
    return {"events/s": events / elapsed}


# --------------------------------------------------------------------------- fan-out


async def _fanout_run(
    broker: str, redis_pid: int, processes: int, subscribers: int, events: int
) -> dict[str, float]:
    with hubs(broker, processes) as running:
        received = Received()
        received.reset(subscribers * events)
        limit = asyncio.Semaphore(100)

        async def subscribe(index: int) -> Subscriber:
            hub = running[index % processes]
            async with limit:
                return await connect(hub.port, Subscriber(f"/events?topic={TOPIC}", received))

        subs = await asyncio.gather(*(subscribe(i) for i in range(subscribers)))
        publishers = [await Publisher.open(running[i % processes].port) for i in range(PUBLISHERS)]
        for index in range(processes):  # publisher i talks to hub i % processes
            await publishers[index].wait_connections(len(range(index, subscribers, processes)))
        pids = [hub.proc.pid for hub in running]
        cpu_before = [_cpu_seconds(pid) for pid in [*pids, redis_pid]]
        started = time.perf_counter()

        async def publish_share(index: int) -> None:
            for seq in range(index, events, PUBLISHERS):
                await publishers[index].publish(make_data(seq))

        await asyncio.gather(*(publish_share(i) for i in range(PUBLISHERS)))
        try:
            await asyncio.wait_for(received.done.wait(), 120)
        except TimeoutError:
            ended = sum(sub.ended.is_set() for sub in subs)
            raise SystemExit(
                f"fan-out: {received.count} of {received.target} deliveries ({ended} streams ended)"
            ) from None
        elapsed = time.perf_counter() - started
        cpu = [
            after - before
            for after, before in zip(
                [_cpu_seconds(pid) for pid in [*pids, redis_pid]], cpu_before, strict=True
            )
        ]
        for publisher in publishers:
            publisher.close()
        for sub in subs:
            sub.close()
    deliveries = subscribers * events
    return {
        "deliveries/s": deliveries / elapsed,
        "p50 ms": percentile(received.latencies_ns, 0.5) / 1e6,
        "p99 ms": percentile(received.latencies_ns, 0.99) / 1e6,
        "hub cpu s/1k": sum(cpu[:-1]) / deliveries * 1000,
        "redis cpu s/1k": cpu[-1] / deliveries * 1000,
    }


# --------------------------------------------------------------------------- resume


async def _resume_run(broker: str, clients: int, behind: int) -> dict[str, float]:
    with hubs(broker, 1) as (hub,):
        publisher = await Publisher.open(hub.port)
        ids = [str((await publisher.publish(make_data(seq)))["id"]) for seq in range(behind + 1)]
        tallies = [Received() for _ in range(clients)]
        for tally in tallies:
            tally.record = False
            tally.reset(behind)
        path = f"/events?topic={TOPIC}"
        subs = [
            Subscriber(path, tally, checked=index < CHECKED, last_event_id=ids[0])
            for index, tally in enumerate(tallies)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(connect(hub.port, sub) for sub in subs))
        await asyncio.wait_for(asyncio.gather(*(t.done.wait() for t in tallies)), 120)
        elapsed = time.perf_counter() - started
        exact = all(t.count == behind for t in tallies) and all(
            sub.last_id == ids[-1] for sub in subs
        )
        exact = exact and all(sub.sequences == list(range(1, behind + 1)) for sub in subs[:CHECKED])
        # Then live: exactly one more event each.
        for tally in tallies:
            tally.reset(behind + 1)
            tally.count = behind
        await publisher.publish(make_data(behind + 1))
        await asyncio.wait_for(asyncio.gather(*(t.done.wait() for t in tallies)), 60)
        exact = exact and all(t.count == behind + 1 for t in tallies)
        publisher.close()
        for sub in subs:
            sub.close()
    if not exact:
        raise SystemExit("resume: a client did not get exactly the events it missed")
    return {"seconds": elapsed, "replayed events/s": clients * behind / elapsed, "exact": 1.0}


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args(__doc__.split("\n", 1)[0], default_rounds=3)
    subscribers, events = (100, 100) if args.quick else (1000, 300)
    clients, behind = (100, 1000) if args.quick else (1000, 1000)
    publish_events = 500 if args.quick else 3000
    print(describe_environment())
    print(pin_load_generator(), "; Redis on core", SIDE_CORE, "; hub B on core", HUB_CORES[1])
    print(f"file limit {raise_file_limit()}; rounds {args.rounds}")
    # Other work on the machine shows up here; pinning cannot keep it off the two cores.
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    runner = uvloop.run

    with redis_server() as (redis_url, redis_pid):
        print(f"\npublish: {publish_events} sequential POST /publish, one hub")
        results = alternate(
            args.rounds,
            [
                ("memory", lambda: runner(_publish_run("memory://", publish_events))),
                (
                    "redis",
                    lambda: runner(_publish_run(_redis_broker(redis_url), publish_events)),
                ),
            ],
        )
        print_table(
            "Publish throughput (events/s, median)",
            ["broker", "events/s"],
            [[name, f"{median(samples, 'events/s'):,.0f}"] for name, samples in results.items()],
        )

        print(f"\nfan-out: {subscribers} subscribers, {events} events, {PUBLISHERS} publishers")

        def fanout_contender(name: str, count: int) -> tuple[str, Callable[[], dict[str, float]]]:
            def run() -> dict[str, float]:
                broker = "memory://" if name == "memory" else _redis_broker(redis_url)
                return runner(_fanout_run(broker, redis_pid, count, subscribers, events))

            return f"{name}, {count} hub{'s' if count > 1 else ''}", run

        fanout = alternate(
            args.rounds,
            [
                fanout_contender("redis", 1),
                fanout_contender("redis", 2),
                fanout_contender("memory", 1),
            ],
        )
        keys = ["deliveries/s", "p50 ms", "p99 ms", "hub cpu s/1k", "redis cpu s/1k"]
        rows = [
            [name, *(f"{median(samples, key):,.3f}" for key in keys)]
            for name, samples in fanout.items()
        ]
        print_table("Fan-out (median)", ["broker, hubs", *keys], rows)
        one, two = (median(fanout[f"redis, {n}"], "deliveries/s") for n in ("1 hub", "2 hubs"))
        print(f"\nscaling factor (2 hubs / 1 hub): {two / one:.2f}")

        print(f"\nresume: {clients} clients at once, {behind} events behind")
        resume = alternate(
            args.rounds,
            [
                ("memory", lambda: runner(_resume_run("memory://", clients, behind))),
                (
                    "redis",
                    lambda: runner(_resume_run(_redis_broker(redis_url), clients, behind)),
                ),
            ],
        )
        keys = ["seconds", "replayed events/s"]
        rows = [
            [name, *(f"{median(samples, key):,.2f}" for key in keys), "yes"]
            for name, samples in resume.items()
        ]
        print_table("Mass resume (median)", ["broker", *keys, "exact"], rows)
    print("\nload average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
