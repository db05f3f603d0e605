"""What one ring of the loop's alarm clock costs, with no event loop around it.

``AlarmClock`` (``ssehub/_response/_timers.py``) behind a fake loop whose time jumps straight to
the armed timer: ``--alarms`` alarms (10 000) start at random times within 15 s and answer each
ring with a time 15-16 s later (as idle streams re-arm for their next ping), for 60 s of fake
time. Prints the median over ``--rounds`` of the clock's wall time per ring (heap pops and
pushes, the timer re-arming, the rings themselves; the ``ring`` here does nothing else).

Run: ``uv run python benchmarks/probe_alarm_clock.py [--alarms 10000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from ssehub._response._timers import Alarm, AlarmClock


class _FakeLoop:
    """``time()`` and ``call_at()``; the probe fires the armed timer itself."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timer: tuple[float, Callable[[], None]] | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _FakeLoop:
        self.timer = (when, callback)
        return self

    def cancel(self) -> None:
        self.timer = None


class _Idle(Alarm):
    __slots__ = ("period", "rings")

    def ring(self, now: float) -> float | None:
        self.rings += 1
        return now + self.period


def one_round(count: int) -> float:
    loop = _FakeLoop()
    clock = AlarmClock(loop, slack=0.02)
    rng = random.Random(1)
    alarms = []
    for _ in range(count):
        alarm = _Idle(clock)
        alarm.period, alarm.rings = 15 + rng.random(), 0
        alarm.start(rng.random() * 15)
        alarms.append(alarm)
    started = time.perf_counter()
    while loop.now < 60 and loop.timer is not None:
        when, fire = loop.timer
        loop.timer, loop.now = None, when
        fire()
    elapsed = time.perf_counter() - started
    return elapsed / sum(alarm.rings for alarm in alarms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alarms", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per_ring = statistics.median(one_round(args.alarms) for _ in range(args.rounds))
    print(f"{args.alarms} alarms: {per_ring * 1e6:.2f} µs per ring (median of {args.rounds})")


if __name__ == "__main__":
    main()
