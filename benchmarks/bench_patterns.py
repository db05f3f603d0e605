"""Pattern subscriptions: the broker's CPU per publish with 1 000 pattern subscribers against
1 000 exact subscribers, in process (no sockets, no encoding beyond the event's one).

Scenarios, each with ``--subscribers`` subscriptions (1 000) of a memory broker, measured as
CPU time (``time.process_time``) around ``await broker.publish(...)`` only (draining the
subscriptions between batches is not timed):

* ``exact``: every subscriber on the topic ``orders/1``; publishes to ``orders/1``. The hot
  path, which patterns must not slow down (no pattern is subscribed in this run).
* ``one pattern``: every subscriber on ``orders/*`` (one group); publishes to 100 topics
  ``orders/<n>`` in turn (match cache hits).
* ``distinct patterns``: subscriber ``k`` on ``orders/<k>/*`` (1 000 groups); publishes to
  ``orders/1/x`` (a cache hit; it reaches 1): what 1 000 patterns cost a publish that few of
  them match.
* ``new topic each publish``: subscriber ``k`` on ``*/items/<k>`` (1 000 groups, each a
  regular expression); each publish goes to a topic never seen, ``orders/new<i>/items/1`` (a
  cache miss: 1 000 matches; it reaches 1): the worst case.
* ``mixed``: 500 exact subscribers of ``orders/1`` and 500 of ``orders/*``, publishes to
  ``orders/1``: each receives it once.

Reported: CPU µs per publish and deliveries/s (pushes onto subscriber queues per CPU second),
medians of ``--rounds`` rounds; scenarios alternate their order between rounds.

Run: ``uv run --group dev python benchmarks/bench_patterns.py [--rounds 5] [--quick]``
(``SSEHUB_BENCH_SRC=/path/to/src`` measures another tree, for the ``exact`` scenario only if
that tree has no patterns).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

import anyio

if os.environ.get("SSEHUB_BENCH_SRC"):
    sys.path.insert(0, os.environ["SSEHUB_BENCH_SRC"])

from ssehub.broker import Broker, Subscription

__all__ = ["main"]

BATCH = 200  # publishes between drains: below the queue size (500), so nobody is shed


def _subscriptions(broker: Broker, scenario: str, count: int) -> list[Subscription]:
    if scenario == "exact":
        return [broker.subscribe("orders/1") for _ in range(count)]
    if scenario == "one pattern":
        return [broker.subscribe("orders/*") for _ in range(count)]
    if scenario == "mixed":
        half = count // 2
        subs = [broker.subscribe("orders/1") for _ in range(half)]
        return subs + [broker.subscribe("orders/*") for _ in range(count - half)]
    if scenario == "distinct patterns":
        return [broker.subscribe(f"orders/{k}/*") for k in range(count)]
    return [broker.subscribe(f"*/items/{k}") for k in range(count)]


def _topic(scenario: str) -> Callable[[int], str]:
    if scenario == "one pattern":
        return lambda i: f"orders/{i % 100}"
    if scenario == "new topic each publish":
        return lambda i: f"orders/new{i}/items/1"
    if scenario == "distinct patterns":
        return lambda i: "orders/1/x"
    return lambda i: "orders/1"


async def _measure(scenario: str, subscribers: int, publishes: int) -> dict[str, float]:
    async with Broker(history_size=10) as broker:
        subs = _subscriptions(broker, scenario, subscribers)
        topic = _topic(scenario)
        # Warm up: fill the match cache for the topics that repeat, allocate the queues.
        for i in range(100):
            await broker.publish(topic(-1 - i) if scenario != "one pattern" else topic(i), "w")
        for sub in subs:
            sub.receive_nowait()
        delivered_before = sum(sub.statistics().delivered for sub in subs)
        cpu = 0.0
        done = 0
        gc.collect()
        gc.disable()
        try:
            while done < publishes:
                n = min(BATCH, publishes - done)
                start = time.process_time()
                for i in range(done, done + n):
                    await broker.publish(topic(i), "x")
                cpu += time.process_time() - start
                done += n
                for sub in subs:
                    sub.receive_nowait()
        finally:
            gc.enable()
        delivered = sum(sub.statistics().delivered for sub in subs) - delivered_before
        assert all(not sub.closed for sub in subs), "a subscriber was shed"
        for sub in subs:
            sub.close()
    return {
        "us_per_publish": cpu / publishes * 1e6,
        "deliveries_per_s": delivered / cpu if cpu else 0.0,
        "deliveries_per_publish": delivered / publishes,
    }


SCENARIOS = ["exact", "one pattern", "distinct patterns", "new topic each publish", "mixed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.subscribers, args.publishes = 2, 100, 200
    scenarios = args.scenario or SCENARIOS
    results: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
    for round_no in range(args.rounds):
        order = scenarios if round_no % 2 == 0 else list(reversed(scenarios))
        for name in order:
            measured = anyio.run(_measure, name, args.subscribers, args.publishes)
            results[name].append(measured)
            print(
                f"  round {round_no + 1}/{args.rounds} {name:<24}"
                f" {measured['us_per_publish']:9.1f} µs/publish"
                f" {measured['deliveries_per_s']:12,.0f} deliveries/s",
                flush=True,
            )
    print(
        f"\n### Pattern subscriptions: {args.subscribers} subscribers, {args.publishes}"
        f" publishes, medians of {args.rounds} rounds\n"
    )
    print("| scenario | CPU µs/publish | deliveries/s | deliveries/publish | rounds (µs) |")
    print("|---|---|---|---|---|")
    for name in scenarios:
        samples = results[name]
        per_publish = [s["us_per_publish"] for s in samples]
        print(
            f"| {name} | {statistics.median(per_publish):.1f}"
            f" | {statistics.median(s['deliveries_per_s'] for s in samples):,.0f}"
            f" | {statistics.median(s['deliveries_per_publish'] for s in samples):,.0f}"
            f" | {', '.join(f'{v:.1f}' for v in per_publish)} |"
        )


if __name__ == "__main__":
    main()
