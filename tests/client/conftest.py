"""Fixtures of the client tests: one scripted SSE server per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sse_testkit import ScriptServer


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptServer]:
    """A scripted SSE server on 127.0.0.1 (see ``sse_testkit``); each test uses its own paths."""
    script_server = ScriptServer()
    script_server.start()
    try:
        yield script_server
    finally:
        script_server.stop()
