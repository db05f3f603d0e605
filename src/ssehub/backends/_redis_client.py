"""What the Redis backend needs before it talks to Redis: redis-py itself, asyncio, error text.

redis-py is an optional dependency (``pip install 'ssehub[redis]'``), imported when a backend is
created; its client (``redis.asyncio``) runs on asyncio only, which :func:`require_asyncio`
checks when the backend starts.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import BackendUnavailable, ConfigurationError, MissingDependency

__all__ = ["import_redis", "require_asyncio", "unavailable"]


def import_redis() -> Any:
    """Return ``redis.asyncio``.

    Raises:
        MissingDependency: redis-py is not installed.
    """
    try:
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - the dev environment has redis installed
        raise MissingDependency("redis", "redis") from exc
    return redis.asyncio


def require_asyncio() -> None:
    """Check that the running event loop is asyncio's.

    Raises:
        ConfigurationError: another async library runs (trio).
    """
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio itself depends on sniffio
        return
    library = sniffio.current_async_library()
    if library != "asyncio":
        raise ConfigurationError(
            f"the Redis backend needs asyncio (redis-py's client), not {library}"
        )


def unavailable(action: str, exc: Exception) -> BackendUnavailable:
    """Return the error for a command that could not reach Redis (``action``: what failed)."""
    return BackendUnavailable(f"Redis is unavailable ({action}): {exc}")
