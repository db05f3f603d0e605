"""``benchmarks/bench_fastapi.py`` runs end to end in its ``--quick`` mode and prints its table.

As in ``test_benchmarks_smoke.py``: the numbers of a quick run mean nothing, only the shape of the
output is checked, so the script does not rot between full runs. The ratio row must be there, and
both servers must have streamed every event (the script exits non-zero on a short stream).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def test_quick_run_prints_the_comparison() -> None:
    env = dict(os.environ)
    env.pop("SSEHUB_BENCH_SRC", None)  # measure the code under test
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_fastapi.py"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in (
        "### FastAPI path operation, one stream",
        "| metric | ssehub (EventSourceRoute) | fastapi.sse | ssehub advantage |",
        "| events/s (client) |",
        "| server CPU µs/event |",
    ):
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"
