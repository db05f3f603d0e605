"""The range checks of the hub's settings, run on every :class:`~ssehub.hub.HubSettings` built.

They run on construction, not when parsing text, so settings built in Python
(``HubSettings(history=0)``) and copies made with ``replace`` are checked the same way as
settings read from the command line or the environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._exceptions import ConfigurationError
from ..broker.topics import MAX_TOPIC_LENGTH
from ._mercure_settings import check_mercure
from ._proxy import parse_networks
from ._settings_parse import LOG_LEVELS, SLOW_POLICIES

# Settings are typed Any here: HubSettings imports this module to run the checks, and a type
# import back would make the two modules import each other (tests/hub/test_hub_imports.py).
HubSettings = Any

__all__ = ["check_http_limits", "check_settings", "unknown_variables"]

# SSEHUB_* variables that are not hub settings: the client's and the CLI's (client/_hub.py).
_NOT_SETTINGS: Final = frozenset({"SSEHUB_URL", "SSEHUB_TOKEN"})


def _at_least_one(settings: HubSettings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 1:
            raise ConfigurationError(f"{name} must be at least 1, not {getattr(settings, name)}")


def check_settings(settings: HubSettings) -> None:
    """Check that every value of ``settings`` is in range.

    Args:
        settings: the settings to check.

    Raises:
        ConfigurationError: a value is out of range; the message names the option.
    """
    if not settings.host:
        raise ConfigurationError("host must not be empty")
    if not 0 <= settings.port <= 65535:
        raise ConfigurationError(f"port must be 0-65535, not {settings.port}")
    if "://" not in settings.broker:
        raise ConfigurationError(f"broker must be a URL such as memory://, not {settings.broker!r}")
    if settings.gc_threshold < 0:
        raise ConfigurationError(f"gc_threshold must not be negative, not {settings.gc_threshold}")
    _at_least_one(settings, "history", "queue_size", "max_body_size", "max_topics", "max_batch")
    if not settings.history_ttl > 0:
        raise ConfigurationError(f"history_ttl must be positive, not {settings.history_ttl}")
    for name in ("max_connection_age", "send_timeout"):
        value = getattr(settings, name)
        if value is not None and not value > 0:
            raise ConfigurationError(f"{name} must be positive or None, not {value}")
    if not settings.ping > 0:
        raise ConfigurationError(f"ping must be positive, not {settings.ping}")
    if settings.max_patterns < 0:
        raise ConfigurationError(f"max_patterns must not be negative, not {settings.max_patterns}")
    if settings.grace_period < 0:
        raise ConfigurationError(f"grace_period must not be negative, not {settings.grace_period}")
    if settings.slow_policy not in SLOW_POLICIES:
        raise ConfigurationError(
            f"slow_policy must be one of {', '.join(SLOW_POLICIES)}, not {settings.slow_policy!r}"
        )
    _check_channels(settings)
    _check_security(settings)
    check_mercure(settings)
    check_http_limits(settings)
    if settings.log_level not in LOG_LEVELS:
        raise ConfigurationError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}"
        )


def _check_channels(settings: HubSettings) -> None:
    _at_least_one(settings, "max_channels", "max_listeners")
    if settings.listener_linger < 0:
        raise ConfigurationError(
            f"listener_linger must not be negative, not {settings.listener_linger}"
        )
    if not 0 <= settings.socket_mode <= 0o777:
        raise ConfigurationError(
            f"socket_mode must be 000-777 (octal), not {settings.socket_mode:o}"
        )
    if settings.ingest_port is not None and not 0 <= settings.ingest_port <= 65535:
        raise ConfigurationError(f"ingest_port must be 0-65535, not {settings.ingest_port}")


def _check_security(settings: HubSettings) -> None:
    _at_least_one(
        settings,
        "max_connections",
        "max_connections_per_address",
        "max_connections_per_token",
        "max_topic_length",
        "max_last_event_id_length",
        "publish_burst",
    )
    if settings.max_topic_length > MAX_TOPIC_LENGTH:
        raise ConfigurationError(f"max_topic_length must be at most {MAX_TOPIC_LENGTH}")
    if settings.auth not in {"none", "jwt", "api_key"}:
        raise ConfigurationError(f"auth must be none, jwt or api_key, not {settings.auth!r}")
    if settings.jwt_leeway < 0:
        raise ConfigurationError("jwt_leeway must not be negative")
    if settings.publish_rate is not None and not settings.publish_rate > 0:
        raise ConfigurationError("publish_rate must be positive or None")
    for origin in settings.cors_origins:
        if origin != "*" and ("://" not in origin or origin.endswith("/")):
            raise ConfigurationError(
                f"CORS origins are '*' or scheme://host[:port] without a path, not {origin!r}"
            )
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigurationError(f"trusted_proxies: {exc}") from None


def check_http_limits(settings: HubSettings) -> None:
    """Check the HTTP limits of ``ssehub serve`` (:mod:`ssehub.cli._http_limits`).

    Raises:
        ConfigurationError: a limit is out of range; the message names the option.
    """
    _at_least_one(settings, "max_header_size", "max_headers", "keep_alive_timeout")
    _at_least_one(settings, "max_pending_connections")
    if settings.http not in ("auto", "httptools", "h11"):
        raise ConfigurationError(f"http must be auto, httptools or h11, not {settings.http!r}")
    for name in ("header_timeout", "body_timeout"):
        if getattr(settings, name) is not None and not getattr(settings, name) > 0:
            raise ConfigurationError(f"{name} must be positive or None")


def unknown_variables(env: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """Return a warning for each ``SSEHUB_*`` variable of ``env`` that is no setting.

    Unknown names are not errors (another tool may share the prefix), but silence would hide
    a typo that leaves a setting at its default: ``SSEHUB_AUHT=jwt`` leaves the hub open.

    Args:
        env: the environment.
        known: the variables of the settings (``SSEHUB_PORT``...).

    Returns:
        One line per unknown variable, sorted, naming the closest setting when there is one.
    """
    names = frozenset(known) | _NOT_SETTINGS
    warnings = []
    for name in sorted(env):
        if not name.startswith("SSEHUB_") or name in names:
            continue
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{name} is not an ssehub setting and is ignored{hint}")
    return warnings
