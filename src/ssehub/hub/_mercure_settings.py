"""The Mercure options of :class:`~ssehub.hub.HubSettings`: declarations, environment, checks.

``ssehub serve --mercure`` serves the Mercure protocol at ``/.well-known/mercure``
(:mod:`ssehub.hub._mercure`). Its options are fields of ``HubSettings`` like every other
(``--mercure-jwt-key`` / ``SSEHUB_MERCURE_JWT_KEY``); their help texts and parsers are declared
here, in :data:`MERCURE_OPTIONS`, so the settings module only names them.

The Mercure hub's own variables are read too (:func:`with_mercure_environment`):
``MERCURE_PUBLISHER_JWT_KEY`` and ``MERCURE_SUBSCRIBER_JWT_KEY`` mean what they mean to the
Mercure hub; an ``SSEHUB_MERCURE_*`` variable, or the flag, wins over them.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any, Final

from .._exceptions import ConfigurationError
from ..broker.patterns import validate_pattern
from ._settings_parse import parse_bool, parse_list, parse_optional_text, parse_upper_choice

__all__ = [
    "MERCURE_ALGORITHMS",
    "MERCURE_ENV_ALIASES",
    "MERCURE_OPTIONS",
    "check_mercure",
    "with_mercure_environment",
]

MERCURE_ALGORITHMS: Final = ("HS256", "RS256")
"""The JWS algorithms ``--mercure-jwt-alg`` accepts (the Mercure hub's defaults and common one)."""

MERCURE_OPTIONS: Final[dict[str, tuple[Any, ...]]] = {
    "mercure": (
        False,
        (
            "serve the Mercure protocol at /.well-known/mercure (subscribe, publish, JWS auth), "
            "beside ssehub's own API; a bare switch"
        ),
        parse_bool,
        "BOOL",
    ),
    "mercure_jwt_key": (
        None,
        (
            "the key of publishers' and subscribers' Mercure JWTs (HS256 secret of 32+ bytes, or a "
            "PEM public key for RS256), unless the two keys below are given"
        ),
        parse_optional_text,
        "KEY",
    ),
    "mercure_publisher_jwt_key": (
        None,
        (
            "the key of publishers' Mercure JWTs (also MERCURE_PUBLISHER_JWT_KEY); publishing "
            "needs one of the two keys"
        ),
        parse_optional_text,
        "KEY",
    ),
    "mercure_subscriber_jwt_key": (
        None,
        (
            "the key of subscribers' Mercure JWTs (also MERCURE_SUBSCRIBER_JWT_KEY); without one "
            "of the two keys, only anonymous subscribers (--mercure-anonymous)"
        ),
        parse_optional_text,
        "KEY",
    ),
    "mercure_jwt_alg": (
        "HS256",
        "the one JWS algorithm of Mercure JWTs, never taken from the token: HS256 or RS256",
        parse_upper_choice(MERCURE_ALGORITHMS),
        "ALG",
    ),
    "mercure_anonymous": (
        False,
        (
            "let Mercure subscribers without a JWT subscribe (they get public updates only); a "
            "bare switch"
        ),
        parse_bool,
        "BOOL",
    ),
    "mercure_cors_origins": (
        (),
        (
            "comma-separated origins allowed to call /.well-known/mercure from a browser (exact "
            "origins get credentials, so the mercureAuthorization cookie; '*' any origin without)"
        ),
        parse_list,
        "ORIGINS",
    ),
    "mercure_topics": (
        (),
        (
            "comma-separated topic patterns ('*' wildcard) that the Mercure hub governs: its "
            "subscribers see, and its publishers write, only these topics; ssehub's own grants "
            "govern the rest. Required with --auth (else both would govern every topic); empty "
            "without --auth: every topic"
        ),
        parse_list,
        "PATTERNS",
    ),
    "mercure_subscriptions": (
        False,
        (
            "serve the subscriptions API (/.well-known/mercure/subscriptions) and publish a "
            "private subscription event when a Mercure subscription starts or ends"
        ),
        parse_bool,
        "BOOL",
    ),
}
"""``name -> (default, help, parser, metavar)``: the arguments of ``option()`` per field."""

MERCURE_ENV_ALIASES: Final = {
    "SSEHUB_MERCURE_PUBLISHER_JWT_KEY": "MERCURE_PUBLISHER_JWT_KEY",
    "SSEHUB_MERCURE_SUBSCRIBER_JWT_KEY": "MERCURE_SUBSCRIBER_JWT_KEY",
}
"""The Mercure hub's variables read when the ``SSEHUB_`` one is not set."""


def with_mercure_environment(env: Mapping[str, str]) -> Mapping[str, str]:
    """Return ``env`` in which each ``SSEHUB_MERCURE_*`` key of :data:`MERCURE_ENV_ALIASES`
    falls back to the Mercure hub's variable of the same meaning.

    Args:
        env: the environment.

    Returns:
        A mapping: ``env`` itself when no alias is set, else ``env`` over the aliases.
    """
    aliased = {ours: env[theirs] for ours, theirs in MERCURE_ENV_ALIASES.items() if theirs in env}
    return ChainMap(dict(env), aliased) if aliased else env


def check_mercure(settings: Any) -> None:
    """Check the Mercure options of ``settings`` (only when ``mercure`` is on).

    Keys are loaded, and so checked for the algorithm, when the app is built
    (:class:`ssehub.hub._mercure_auth.MercureAuth`).

    Raises:
        ConfigurationError: no key for publishers, or subscribers could neither present a
            token nor subscribe anonymously, or ``--auth`` without ``--mercure-topics``, or an
            invalid pattern there.
    """
    if settings.mercure_jwt_alg not in MERCURE_ALGORITHMS:
        raise ConfigurationError(
            f"mercure_jwt_alg must be one of {', '.join(MERCURE_ALGORITHMS)}, "
            f"not {settings.mercure_jwt_alg!r}"
        )
    if not settings.mercure:
        return
    if not (settings.mercure_publisher_jwt_key or settings.mercure_jwt_key):
        raise ConfigurationError(
            "--mercure needs a key for publishers' JWTs: --mercure-jwt-key or "
            "--mercure-publisher-jwt-key (or MERCURE_PUBLISHER_JWT_KEY)"
        )
    try:
        for pattern in settings.mercure_topics:
            validate_pattern(pattern)
    except ValueError as exc:
        raise ConfigurationError(f"--mercure-topics: {exc}") from None
    if settings.auth != "none" and not settings.mercure_topics:
        raise ConfigurationError(
            "--mercure with --auth needs --mercure-topics: the topics Mercure's tokens govern "
            "(e.g. 'https://example.com/*'); otherwise a Mercure token could read and write "
            "topics that ssehub's grants protect. Give '*' to share every topic on purpose"
        )
    if not (
        settings.mercure_subscriber_jwt_key
        or settings.mercure_jwt_key
        or settings.mercure_anonymous
    ):
        raise ConfigurationError(
            "--mercure needs a key for subscribers' JWTs (--mercure-jwt-key or "
            "--mercure-subscriber-jwt-key, or MERCURE_SUBSCRIBER_JWT_KEY), or "
            "--mercure-anonymous to let anyone subscribe to public updates"
        )
