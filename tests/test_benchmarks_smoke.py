"""Every benchmark script runs end to end in its ``--quick`` mode and prints its result table.

The numbers of a quick run mean nothing (tiny counts, a shared machine), so only the shape of
the output is checked: the script exits 0 and prints the rows RESULTS.md quotes. This keeps the
scripts from rotting between the occasional full runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.integration

# script -> lines (substrings) its result table must contain
EXPECTED = {
    "bench_encode.py": ["### Encoding", "| fresh (construct + encode) |", "| re-encode |"],
    "bench_stream.py": ["### One stream", "| events/s (client) |", "| server CPU µs/event |"],
    "bench_hub_fanout.py": [
        "### Fan-out",
        "| deliveries/s (burst) |",
        "| server CPU µs/delivery |",
        "| 20 events/s: latency p99 (ms) |",
        "streams ended by a server during measurement: 0",
    ],
    "bench_hub_idle.py": [
        "### Idle streams",
        "| server RSS per stream (KiB) |",
        "streams ended by a server during measurement: 0",
    ],
    "bench_hub_drain.py": [
        "### Shutdown with",
        "| time from SIGINT to exit (s) |",
        "| streams ended with a clean end of body | 1.000 |",
    ],
    "profile_hub_inprocess.py": ["µs of CPU per delivery (no sockets)"],
    "probe_fanout_spread.py": ["first arrival median", "p99", "; 0 not received"],
    "bench_idle_listeners.py": [
        "### Idle listeners",
        "| message streams (a task each) |",
        "| callback listeners (thread pool) |",
        "| HTTP SSE responses (hub route) |",
    ],
    "bench_patterns.py": [
        "### Pattern subscriptions",
        "| exact |",
        "| one pattern |",
        "| new topic each publish |",
    ],
    "bench_hub_slow.py": [
        "### Slow consumer",
        "| others' p99 with the slow one (ms) |",
        "| server RSS peak (MiB) |",
        "| events it never received after reconnecting |",
    ],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_quick_run_prints_results(script: str) -> None:
    env = dict(os.environ)
    env.pop("SSEHUB_BENCH_SRC", None)  # measure the code under test
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in EXPECTED[script]:
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"


def test_fanout_middleware_comparison_runs() -> None:
    env = dict(os.environ)
    env.pop("SSEHUB_BENCH_SRC", None)
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_hub_fanout.py"), "--quick", "--middleware"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| metric | bare | behind a pass-through middleware | bare / wrapped |" in result.stdout
    assert "| server CPU µs/delivery |" in result.stdout
    assert "streams ended by a server during measurement: 0" in result.stdout
