"""Idle listeners cost no CPU: 1 000 channel listeners waiting for 10 s, process CPU time printed.

Three kinds of idle listener, each measured on its own for ``--seconds``:

* ``stream``: a task per listener iterating ``channel.message_stream(listener)`` (Python API);
* ``callback``: ``WorkerPool.attach`` callback listeners (one consumer task each);
* ``http``: the hub's ``GET /channels/{c}/listeners/{l}/events``, one SSE response per
  listener, driven in-process through ``ssehub.testing.stream_asgi`` (pings every 15 s, the
  default, so an idle 10 s window sends none).

Each listener receives one message first (so it is really consuming), then nothing. The
process CPU time (``time.process_time()``, user + system, all threads) over the idle window is
what is reported: with no polling loop anywhere it stays near zero whatever the listener count.

Run: ``uv run python benchmarks/bench_idle_listeners.py [--listeners 1000] [--seconds 10]
[--backend asyncio|trio] [--quick]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from importlib.metadata import version

import anyio
import anyio.from_thread

from ssehub.channels import Channel, Message, WorkerPool
from ssehub.hub import HubSettings, create_app
from ssehub.testing import stream_asgi

__all__ = ["main"]

Scenario = Callable[[int, float], Awaitable[float]]


async def _idle(seconds: float) -> float:
    """Sleep ``seconds`` and return the process CPU seconds used meanwhile."""
    before = time.process_time()
    await anyio.sleep(seconds)
    return time.process_time() - before


async def idle_streams(listeners: int, seconds: float) -> float:
    """``listeners`` tasks, each iterating one listener's message stream."""
    async with Channel("idle", max_listeners=listeners) as channel:
        received = 0
        all_received = anyio.Event()

        async def consume(stream: object) -> None:
            nonlocal received
            async for _ in stream:  # type: ignore[attr-defined]
                received += 1
                if received == listeners:
                    all_received.set()

        async with anyio.create_task_group() as tg:
            for _ in range(listeners):
                tg.start_soon(consume, channel.message_stream(channel.add_listener()))
            await channel.broadcast(Message("hello"))
            await all_received.wait()
            cpu = await _idle(seconds)
            tg.cancel_scope.cancel()
    return cpu


async def idle_callbacks(listeners: int, seconds: float) -> float:
    """``listeners`` callback listeners of one thread pool."""
    async with (
        Channel("idle", max_listeners=listeners) as channel,
        WorkerPool(max_workers=4) as pool,
    ):
        all_processed = anyio.Event()
        lock = threading.Lock()
        processed = 0

        def callback(message: Message) -> None:
            nonlocal processed
            with lock:
                processed += 1
                if processed == listeners:
                    anyio.from_thread.run_sync(all_processed.set)

        handles = [pool.attach(channel, callback, ordered=True) for _ in range(listeners)]
        await channel.broadcast(Message("hello"))
        await all_processed.wait()
        cpu = await _idle(seconds)
        assert all(not handle.done for handle in handles)
    return cpu


async def idle_http(listeners: int, seconds: float) -> float:
    """``listeners`` SSE responses of the hub's channel route."""
    # Every stream comes from one in-process address: lift the hub's stream limits (100 per
    # address by default), as the other in-process benchmarks do.
    app = create_app(
        HubSettings(
            max_listeners=listeners,
            max_connections=listeners + 10,
            max_connections_per_address=listeners + 10,
        )
    )
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        registry = app.state.hub.channels.registry
        channel = await registry.create("idle")
        streams = []
        for _ in range(listeners):
            listener = channel.add_listener()
            path = f"/channels/idle/listeners/{listener.id}/events"
            stream = await stack.enter_async_context(stream_asgi(app, path))
            await stream.start()
            if stream.status_code != 200:
                raise SystemExit(f"the listener stream answered {stream.status_code}")
            streams.append(stream)
        await channel.broadcast(Message("hello"))
        for stream in streams:
            await stream.events().take(1)
        return await _idle(seconds)


LABELS: dict[str, str] = {
    "stream": "message streams (a task each)",
    "callback": "callback listeners (thread pool)",
    "http": "HTTP SSE responses (hub route)",
}
"""Row labels of the Markdown table (``tests/test_benchmarks_smoke.py`` checks them)."""

SCENARIOS: dict[str, Scenario] = {
    "stream": idle_streams,
    "callback": idle_callbacks,
    "http": idle_http,
}


def main() -> None:
    """Run every scenario and print a table of CPU time over the idle window."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--quick", action="store_true", help="100 listeners for 1 s")
    args = parser.parse_args()
    if args.quick:
        args.listeners, args.seconds = 100, 1.0
    print(
        f"Python {platform.python_version()}, ssehub {version('ssehub')}, anyio "
        f"{version('anyio')}, backend {args.backend}, {platform.machine()}, {sys.platform}"
    )
    print(f"{args.listeners} idle listeners, {args.seconds:g} s each\n")
    print(f"{'scenario':<10} {'CPU ms':>8} {'CPU %':>7} {'CPU us/listener/s':>18}")
    rows: list[tuple[str, float]] = []
    for name, scenario in SCENARIOS.items():
        cpu = anyio.run(scenario, args.listeners, args.seconds, backend=args.backend)
        share = 100 * cpu / args.seconds
        per = 1e6 * cpu / args.listeners / args.seconds
        print(f"{name:<10} {1000 * cpu:>8.2f} {share:>6.3f}% {per:>18.3f}", flush=True)
        rows.append((name, cpu))
    print(
        f"\n### Idle listeners ({args.listeners} listeners, {args.seconds:g} s idle,"
        f" {args.backend})\n"
    )
    print("| listeners | process CPU over the window (ms) | CPU % of one core |")
    print("|---|---|---|")
    for name, cpu in rows:
        print(f"| {LABELS[name]} | {1000 * cpu:.2f} | {100 * cpu / args.seconds:.3f} |")


if __name__ == "__main__":
    main()
