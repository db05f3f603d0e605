"""Shared helpers for the benchmarks: argument parsing, alternating rounds, medians, a table.

Every benchmark compares ssehub with sse-starlette in the same process run, alternating which
library goes first in each round so drift (thermal, other load) hits both alike, and reports
the median of the rounds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version

__all__ = ["alternate", "describe_environment", "median", "parse_args", "print_table"]


def parse_args(description: str, default_rounds: int) -> argparse.Namespace:
    """Parse ``--rounds N`` and ``--quick`` (a fast smoke run)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=default_rounds, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in < 20 s")
    return parser.parse_args()


def describe_environment() -> str:
    """One line naming the interpreter and the versions compared."""
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"ssehub {version('ssehub')}, sse-starlette {version('sse-starlette')}, "
        f"{platform.machine()}, {sys.platform}"
    )


def alternate(
    rounds: int, contenders: Sequence[tuple[str, Callable[[], dict[str, float]]]]
) -> dict[str, list[dict[str, float]]]:
    """Run every contender once per round, reversing the order on every other round.

    Returns, per contender name, the list of the measurement dicts its callable returned.
    """
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in contenders}
    for round_no in range(rounds):
        order = list(contenders) if round_no % 2 == 0 else list(reversed(contenders))
        for name, run in order:
            measured = run()
            results[name].append(measured)
            shown = ", ".join(f"{key}={value:,.2f}" for key, value in measured.items())
            print(f"  round {round_no + 1}/{rounds} {name:<14} {shown}", flush=True)
    return results


def median(samples: list[dict[str, float]], key: str) -> float:
    """The median of one measurement over the rounds."""
    return statistics.median(sample[key] for sample in samples)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a Markdown table (pasted as is into RESULTS.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
