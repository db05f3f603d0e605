"""Running a real ``ssehub serve`` and Debian's Chromium for the browser tests.

The browser tests drive ``/usr/bin/chromium`` through Playwright (browser downloads are
impossible here) against ``ssehub serve`` on a free 127.0.0.1 port. They skip with the reason
when Chromium or Playwright is missing, unless ``SSEHUB_REQUIRE_BROWSER=1`` (CI), which makes
that a failure. Used by ``test_dashboard_browser.py`` and ``test_mercure_browser.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from integration.test_hub_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT = 15.0


def browser_or_skip() -> Any:
    required = os.environ.get("SSEHUB_REQUIRE_BROWSER") == "1"
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (it is in the dev group: uv sync)"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is not None:
        if required:
            pytest.fail(f"SSEHUB_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return sync_playwright


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``ssehub serve`` on a free loopback port; yield its URL once it has started.

    Args:
        *args: more ``serve`` arguments.
        env: more environment variables.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        text=True,
    )
    ready = threading.Event()
    lines: list[str] = []

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "authentication is" in line:  # the last line of the startup log
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert ready.wait(TIMEOUT), "the server did not start in time"
        assert process.poll() is None, "".join(lines)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)
        reader.join(TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()


__all__ = ["ARTIFACTS", "CHROMIUM", "TIMEOUT", "browser_or_skip", "serve"]
