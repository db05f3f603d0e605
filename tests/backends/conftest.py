"""Backends under test: each conformance test runs once per backend in ``BACKENDS``.

To add a backend (for example Redis), add one ``pytest.param`` to ``BACKENDS`` whose factory
takes ``(history_size, history_ttl)`` and returns a fresh, isolated, not yet started backend
(for Redis: a unique key prefix per test), marked ``pytest.mark.redis`` so it can skip.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis_support import redis_factory  # Redis helper: skips without Redis (and under trio)

from ssehub.backends import Backend, MemoryBackend

BackendFactory = Callable[[int, float], Backend]


def _memory(history_size: int, history_ttl: float) -> Backend:
    return MemoryBackend(history_size=history_size, history_ttl=history_ttl)


BACKENDS = [
    pytest.param(_memory, id="memory"),
    pytest.param(redis_factory, id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=BACKENDS)
def backend_factory(request: pytest.FixtureRequest) -> BackendFactory:
    """A factory of fresh backends of one kind: ``factory(history_size, history_ttl)``."""
    factory: BackendFactory = request.param
    return factory
