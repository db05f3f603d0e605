"""Encoding benchmark: ssehub vs sse-starlette, events/s for a mixed set of events.

Two measurements per library, alternating rounds, medians:

* fresh: construct *and* encode each event (short text, multi-line text, a JSON object, an
  event with id and type), as an application creating events does;
* re-encode: call ``encode()`` again on events that already exist (ssehub returns the bytes it
  computed at construction; sse-starlette renders the event again).

Run: ``taskset -c 0 uv run python benchmarks/bench_encode.py [--rounds N] [--quick]``
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import sse_starlette.event as starlette_sse
from _common import alternate, describe_environment, median, parse_args, print_table

import ssehub
from ssehub.wire import parse

__all__ = ["main"]

KINDS = 4  # events constructed per loop iteration below


def make_fresh(event_cls: Any, json_cls: Any) -> Callable[[list[str]], int]:
    """The same source for both libraries: only the two classes differ."""

    def fresh(ids: list[str]) -> int:
        for i in ids:
            event_cls("hello world").encode()
            event_cls("line one\nline two\nline three", event="multi").encode()
            json_cls(
                {"id": i, "user": "ada", "tags": ["a", "b"], "score": 0.5}, event="json"
            ).encode()
            event_cls("payload", id=i, event="tick").encode()
        return KINDS * len(ids)

    return fresh


def make_events(event_cls: Any, json_cls: Any, ids: list[str]) -> list[Any]:
    events = []
    for i in ids:
        events.append(event_cls("hello world"))
        events.append(event_cls("line one\nline two\nline three", event="multi"))
        events.append(
            json_cls({"id": i, "user": "ada", "tags": ["a", "b"], "score": 0.5}, event="json")
        )
        events.append(event_cls("payload", id=i, event="tick"))
    return events


def reencode(events: list[Any]) -> int:
    for event in events:
        event.encode()
    return len(events)


def timed(run: Callable[[], int]) -> dict[str, float]:
    gc.collect()
    start = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - start
    return {"events_per_s": count / elapsed}


def check_same_events() -> None:
    """Both libraries must produce frames that parse to the same events (same work measured)."""
    ids = ["1", "2"]
    ours = make_events(ssehub.ServerSentEvent, ssehub.JSONServerSentEvent, ids)
    theirs = make_events(starlette_sse.ServerSentEvent, starlette_sse.JSONServerSentEvent, ids)
    ours_parsed = parse(b"".join(e.encode() for e in ours))
    theirs_parsed = parse(b"".join(e.encode() for e in theirs))
    if ours_parsed != theirs_parsed or len(ours_parsed) != len(ours):
        raise SystemExit(f"outputs differ:\n{ours_parsed}\n{theirs_parsed}")


def main() -> None:
    args = parse_args(__doc__ or "", default_rounds=7)
    n = 10_000 if args.quick else 50_000
    rounds = min(args.rounds, 3) if args.quick else args.rounds
    print(describe_environment())
    check_same_events()
    ids = [str(i) for i in range(n)]
    libs = {
        "ssehub": (ssehub.ServerSentEvent, ssehub.JSONServerSentEvent),
        "sse-starlette": (starlette_sse.ServerSentEvent, starlette_sse.JSONServerSentEvent),
    }

    print(f"\nfresh events (construct + encode), {KINDS * n:,} events per round")
    fresh_runs = {name: make_fresh(*classes) for name, classes in libs.items()}
    fresh = alternate(
        rounds,
        [(name, lambda f=fresh_runs[name]: timed(lambda: f(ids))) for name in libs],
    )
    print(f"\nre-encoding existing events, {KINDS * n:,} events per round")
    prebuilt = {name: make_events(*classes, ids) for name, classes in libs.items()}
    again = alternate(
        rounds,
        [(name, lambda e=prebuilt[name]: timed(lambda: reencode(e))) for name in libs],
    )

    rows = []
    for label, results in (("fresh (construct + encode)", fresh), ("re-encode", again)):
        ours = median(results["ssehub"], "events_per_s")
        theirs = median(results["sse-starlette"], "events_per_s")
        rows.append([label, f"{ours:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.2f}x"])
    print_table(
        f"Encoding, median of {rounds} rounds (events/s)",
        ["workload", "ssehub", "sse-starlette", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
