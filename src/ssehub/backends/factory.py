"""Choose a backend from a URL: ``memory://`` now, ``redis://`` and ``rediss://`` via a hook.

Each scheme maps to ``"module:attribute"``, a callable ``(url, *, history_size, history_ttl)``
returning a :class:`~ssehub.backends.Backend` (given ``budget=`` too when the broker has one).
The modules are imported only when their scheme is used, so the Redis extra is needed only by
those who use Redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    from ..broker.history import HistoryBudget
    from .base import Backend

__all__ = ["BACKEND_SCHEMES", "create_backend"]

BACKEND_SCHEMES: Final[dict[str, str]] = {
    "memory": "ssehub.backends.memory:MemoryBackend.from_url",
    # Hook for the Redis backend (ssehub/backends/redis.py): a ``RedisBackend.from_url``
    # classmethod with the same signature as ``MemoryBackend.from_url``.
    "redis": "ssehub.backends.redis:RedisBackend.from_url",
    "rediss": "ssehub.backends.redis:RedisBackend.from_url",
}
"""URL scheme -> ``"module:qualified.name"`` of the backend factory."""


def create_backend(
    url: str, *, history_size: int, history_ttl: float, budget: HistoryBudget | None = None
) -> Backend:
    """Create the backend named by ``url``.

    Args:
        url: ``memory://`` or (with the Redis backend) ``redis://host:port/db``, ``rediss://...``.
        history_size: events kept per topic.
        history_ttl: seconds an event is kept.
        budget: the largest event and the byte and topic bounds of history; passed on only
            when given (the backend's defaults otherwise).

    Returns:
        A backend, not yet started.

    Raises:
        ConfigurationError: unknown scheme, or a backend that is not available in this build.
        MissingDependency: the backend needs an extra that is not installed.
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    target = BACKEND_SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in BACKEND_SCHEMES)
        raise ConfigurationError(f"unknown broker backend URL scheme {scheme!r}; use {known}")
    module_name, _, qualname = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a dependency of the backend is missing: its own error says which
        raise ConfigurationError(f"the {scheme}:// backend is not available") from exc
    factory: Any = module
    for part in qualname.split("."):
        factory = getattr(factory, part)
    extra: dict[str, Any] = {} if budget is None else {"budget": budget}
    backend: Backend = factory(url, history_size=history_size, history_ttl=history_ttl, **extra)
    return backend
