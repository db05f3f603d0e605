"""Fixtures of the CLI tests: a real hub on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hub_server import HubServer


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """A fresh hub (memory broker, default settings) on 127.0.0.1."""
    server = HubServer().start()
    try:
        yield server
    finally:
        server.stop()
