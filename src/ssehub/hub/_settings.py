"""The hub's settings: one frozen dataclass, filled from defaults, ``SSEHUB_<NAME>`` and the CLI.

Every option is declared once, as a dataclass field whose metadata carries its help text and its
text parser. ``ssehub serve`` builds its command-line flags from that metadata, and
:meth:`HubSettings.from_sources` reads the same names from the environment, so a flag, its
variable and its documentation cannot drift apart. Precedence: command line, then environment,
then the default. :func:`ssehub.hub.create_app` called without settings reads the same
environment (:meth:`HubSettings.from_environment`), so any ASGI server honours ``SSEHUB_*``.

The text parsers are in :mod:`ssehub.hub._settings_parse`, the range checks (run on every
construction) in :mod:`ssehub.hub._settings_checks`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._exceptions import ConfigurationError
from ..broker import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    DEFAULT_MAX_PATTERNS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_QUEUE_SIZE,
)
from ..broker import history as _history
from ._mercure_settings import MERCURE_OPTIONS as _MERCURE
from ._mercure_settings import with_mercure_environment
from ._settings_checks import check_settings
from ._settings_parse import (
    LOG_LEVELS,
    SLOW_POLICIES,
    option,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_list,
    parse_octal,
    parse_optional_port,
    parse_optional_seconds,
    parse_optional_text,
    parse_upper_choice,
)

__all__ = ["ENV_PREFIX", "HubSettings", "OptionSpec", "options"]

ENV_PREFIX: Final = "SSEHUB_"
"""Environment variables are named ``SSEHUB_`` + the option name in upper case."""

_ON: Final = True
_OFF: Final = False


@dataclass(frozen=True)
class HubSettings:
    """Every option of the hub, with defaults chosen for a hub that browsers connect to.

    Construct it directly in Python (``HubSettings(history=5000)``), or with
    :meth:`from_sources` from command-line values and ``SSEHUB_<NAME>`` environment variables.

    Raises:
        ConfigurationError: a value is out of range (checked on construction).
    """

    host: str = option(
        "127.0.0.1",
        "interface to listen on; loopback by default because authentication is not enabled",
        str,
        "HOST",
    )
    port: int = option(8000, "TCP port to listen on (0 picks a free port)", parse_int, "PORT")
    broker: str = option(
        "memory://",
        "broker backend URL: memory:// (one process) or redis://host:port/db",
        str,
        "URL",
    )
    history: int = option(
        DEFAULT_HISTORY_SIZE,
        "events kept per topic for Last-Event-ID resume; Mercure's order of magnitude: about "
        "1 MiB per topic at 1 KiB per event while covering minutes of a busy feed",
        parse_int,
        "N",
    )
    history_ttl: float = option(
        DEFAULT_HISTORY_TTL,
        "seconds an event stays in history; one hour outlasts laptop sleeps, tunnels and "
        "deploys, after which clients get an honest 'expired' reset",
        parse_float,
        "SECONDS",
    )
    # -- byte budgets (defaults and help: ssehub.broker.history.BUDGET_OPTIONS, HistoryBudget)
    max_event_size: int = option(*_history.BUDGET_OPTIONS["max_event_size"], parse_int, "BYTES")
    history_bytes: int = option(*_history.BUDGET_OPTIONS["history_bytes"], parse_int, "BYTES")
    history_total_bytes: int = option(
        *_history.BUDGET_OPTIONS["history_total_bytes"], parse_int, "BYTES"
    )
    history_topics: int = option(*_history.BUDGET_OPTIONS["history_topics"], parse_int, "N")
    ping: float = option(
        15.0,
        "seconds between heartbeat comments on an idle stream; 15 s stays below the 30-60 s "
        "idle timeouts of common proxies and load balancers (nginx 60 s, AWS ALB 60 s)",
        parse_float,
        "SECONDS",
    )
    max_connection_age: float | None = option(
        None,
        "end each stream after about this many seconds (with jitter) so clients rotate across "
        "servers and half-open connections are reaped; 0/none = never (default)",
        parse_optional_seconds,
        "SECONDS",
    )
    queue_size: int = option(
        DEFAULT_QUEUE_SIZE,
        "events buffered per subscriber before the slow-consumer policy applies; half of "
        "--history, so that a subscriber shed for being this far behind can still resume "
        "from history",
        parse_int,
        "N",
    )
    slow_policy: str = option(
        "disconnect",
        "what to do with a subscriber whose queue is full: disconnect (default; it reconnects "
        "and catches up from history), drop_oldest, or block (stalls publishers: never for "
        "browsers)",
        parse_choice(SLOW_POLICIES),
        "POLICY",
    )
    send_timeout: float | None = option(
        10.0,
        "seconds a client may take to accept one write before its stream is ended (0/none = "
        "never); 10 s is NATS's write deadline: a frozen client cannot pin a stream forever",
        parse_optional_seconds,
        "SECONDS",
    )
    grace_period: float = option(
        10.0,
        "seconds to let streams end on SIGTERM/SIGINT before tasks are cancelled; well inside "
        "Kubernetes' default 30 s termination grace period",
        parse_float,
        "SECONDS",
    )
    max_body_size: int = option(
        1024 * 1024,
        "largest POST /publish body in bytes (413 above it); 1 MiB is nginx's "
        "client_max_body_size default",
        parse_int,
        "BYTES",
    )
    max_topics: int = option(
        DEFAULT_MAX_TOPICS,
        "most topics in one subscription or one published event; 32 topics of up to 256 "
        "characters keep a GET /events URL under the 8 KiB request-line limit of common proxies",
        parse_int,
        "N",
    )
    max_patterns: int = option(
        DEFAULT_MAX_PATTERNS,
        "most patterns (topics with '*', such as orders/*) in one subscription, counted in "
        "--max-topics too; each costs a match per new topic published (400 too_many_topics)",
        parse_int,
        "N",
    )
    max_batch: int = option(
        1000,
        "most events in one POST /publish batch (413 above it); bounds the time one request "
        "holds the broker",
        parse_int,
        "N",
    )
    docs: bool = option(
        _ON,
        "serve /openapi.json and the /docs page",
        parse_bool,
        "BOOL",
    )
    log_level: str = option(
        "info",
        "log level: critical, error, warning, info, debug, trace",
        parse_choice(LOG_LEVELS),
        "LEVEL",
    )
    access_log: bool = option(
        _OFF,
        "log every request; off by default because one log line costs more than a publish",
        parse_bool,
        "BOOL",
    )

    # -- scaling (Redis, --workers): options added here ------------------------------------
    workers: int = option(
        1,
        "hub processes serving one socket (about one per core); above 1 needs a shared broker "
        "(redis://) and --no-channels: the memory broker and channels live inside one process",
        parse_int,
        "N",
    )

    # -- channels and socket ingest: options added here -----------------------------------

    channels: bool = option(
        _ON,
        "serve the channel routes (/channels...): listeners addressed by id, broadcast and "
        "dispatch",
        parse_bool,
        "BOOL",
    )
    max_channels: int = option(
        1000,
        "most channels at once; bounds what clients allowed to create channels can allocate",
        parse_int,
        "N",
    )
    max_listeners: int = option(
        10_000,
        "most listeners per channel; each costs a queue, so a client creating listeners in a "
        "loop cannot exhaust memory",
        parse_int,
        "N",
    )
    listener_linger: float = option(
        30.0,
        "seconds a channel listener without a connected client is kept, so a client that "
        "reconnects (EventSource retries after about 3 s) resumes with Last-Event-ID; then it "
        "is removed (0: as soon as its client disconnects)",
        parse_float,
        "SECONDS",
    )
    socket: str | None = option(
        None,
        "also accept newline-delimited JSON commands (publish, broadcast, dispatch) on this "
        "Unix socket path; none = off",
        parse_optional_text,
        "PATH",
    )
    socket_mode: int = option(
        0o600,
        "permissions of the Unix socket, in octal; 600 lets only the hub's user write to it",
        parse_octal,
        "MODE",
    )
    ingest_port: int | None = option(
        None,
        "also accept the socket commands on this TCP port (0 picks a free one); none = off",
        parse_optional_port,
        "PORT",
    )
    ingest_host: str = option(
        "127.0.0.1",
        "interface of the TCP ingest port; loopback by default because ingest has no "
        "authentication",
        str,
        "HOST",
    )

    # -- security (auth, CORS, limits, proxies): options added here ------------------------
    auth: str = option(
        "none",
        "authentication: none (default, for local development: anyone who can connect may "
        "publish and subscribe), jwt (JSON Web Tokens, plus API keys if a key file is given) "
        "or api_key (static keys only)",
        parse_choice(("none", "jwt", "api_key")),
        "MODE",
    )
    jwt_algorithm: str = option(
        "HS256",
        "the one JWT algorithm accepted, never taken from the token: HS256, RS256 or ES256",
        parse_upper_choice(("HS256", "RS256", "ES256")),
        "ALG",
    )
    jwt_key: str | None = option(
        None,
        "the HS256 secret (32+ bytes) or the PEM public key; prefer SSEHUB_JWT_KEY or "
        "--jwt-key-file, since command lines are visible to other local users",
        parse_optional_text,
        "KEY",
    )
    jwt_key_file: str | None = option(
        None, "file holding the HS256 secret or the PEM public key", parse_optional_text, "PATH"
    )
    jwks_file: str | None = option(
        None,
        "file holding a JSON Web Key Set; the key is chosen by the token's kid",
        parse_optional_text,
        "PATH",
    )
    jwt_audience: str | None = option(
        None, "when set, tokens must carry this aud claim", parse_optional_text, "AUD"
    )
    jwt_issuer: str | None = option(
        None, "when set, tokens must carry this iss claim", parse_optional_text, "ISS"
    )
    jwt_leeway: float = option(
        0.0,
        "seconds of clock skew tolerated on exp and nbf; 0 because issuer and hub usually "
        "share NTP time, and every second of leeway extends a revoked token's life",
        parse_float,
        "SECONDS",
    )
    api_keys_file: str | None = option(
        None,
        "file of static API keys for server-to-server clients: one key (16+ characters) per "
        "line, optionally followed by the topic patterns it is limited to",
        parse_optional_text,
        "PATH",
    )
    auth_cookie: str = option(
        "ssehub_token",
        "name of the cookie holding a token (browsers' EventSource cannot send headers); "
        "empty to ignore cookies",
        str,
        "NAME",
    )
    auth_query_token: bool = option(
        _OFF,
        "accept a token in the 'token' query parameter; off because URLs end up in access "
        "logs, proxies and browser history",
        parse_bool,
        "BOOL",
    )
    anonymous_subscribe: bool = option(
        _OFF,
        "with auth on, let clients without a credential subscribe to any topic (they get "
        "public events only); off so that an auth-enabled hub is closed by default",
        parse_bool,
        "BOOL",
    )
    cors_origins: tuple[str, ...] = option(
        (),
        "comma-separated origins allowed to call the hub from a browser (exact origins get "
        "credentials; '*' allows any origin without credentials); none by default",
        parse_list,
        "ORIGINS",
    )
    trusted_proxies: tuple[str, ...] = option(
        (),
        "comma-separated addresses or networks of reverse proxies whose X-Forwarded-For / "
        "Forwarded headers are believed; none by default, so clients cannot spoof addresses",
        parse_list,
        "NETWORKS",
    )
    max_connections: int = option(
        10_000,
        "most open event streams (429 above it); 10 000 idle streams use a few hundred MiB "
        "and need 'ulimit -n' above it (the common soft default is 1024)",
        parse_int,
        "N",
    )
    max_connections_per_address: int = option(
        100,
        "most open streams from one client address; browsers open at most 6 HTTP/1.1 "
        "connections per site, 100 leaves room for an office behind one NAT while one client "
        "cannot take more than 1% of the default total",
        parse_int,
        "N",
    )
    max_connections_per_token: int = option(
        20,
        "most open streams with one token or API key; covers a user's tabs and devices, "
        "bounds what one leaked token can hold",
        parse_int,
        "N",
    )
    max_topic_length: int = option(
        256,
        "longest topic name in characters (at most 256, the broker's bound); topics use URI "
        "characters only (RFC 3986), so they are safe in URLs, logs and Redis keys",
        parse_int,
        "N",
    )
    max_last_event_id_length: int = option(
        256,
        "longest Last-Event-ID accepted (400 above it); hub ids are under 64 characters, and "
        "a bound keeps a 10 KB header from reaching the history lookup",
        parse_int,
        "N",
    )
    publish_rate: float | None = option(
        None,
        "events per second each token (or address, without one) may publish, in bursts of "
        "--publish-burst; 0/none = off (default): publishers are usually trusted services "
        "whose normal rate the hub cannot guess; turn it on for browser or third-party "
        "publishers",
        parse_optional_seconds,
        "RATE",
    )
    publish_burst: int = option(
        1000,
        "largest burst of events above --publish-rate (and so the largest batch a limited "
        "publisher can send); equals the default --max-batch",
        parse_int,
        "N",
    )

    # -- HTTP limits of `ssehub serve` (ssehub.cli._http_limits) -----------------------------
    http: str = option(
        "auto",
        "HTTP/1.1 parser of `ssehub serve`: httptools, h11, or auto (httptools when installed)",
        parse_choice(("auto", "httptools", "h11")),
        "PARSER",
    )
    max_header_size: int = option(
        32 * 1024,
        "largest request head (request line and header fields) in bytes; 431 and a close above "
        "it, nothing past it buffered; 32 KiB is nginx's large_client_header_buffers (4 x 8k)",
        parse_int,
        "BYTES",
    )
    max_headers: int = option(
        100,
        "most header fields in a request (431 and a close above it); Apache's LimitRequestFields",
        parse_int,
        "N",
    )
    header_timeout: float | None = option(
        20.0,
        "seconds to send a whole request head, from the connection (or a later request's first "
        "byte); then 408 and a close; Apache mod_reqtimeout's header=20 (nginx waits 60 s)",
        parse_optional_seconds,
        "SECONDS",
    )
    body_timeout: float | None = option(
        20.0,
        "seconds a request body (or a socket-ingest line begun) may send nothing before the "
        "connection is closed; Apache mod_reqtimeout's body=20, counted between reads",
        parse_optional_seconds,
        "SECONDS",
    )
    keep_alive_timeout: int = option(
        5,
        "whole seconds an idle connection stays open between requests (uvicorn's default); "
        "keep a reverse proxy's upstream keep-alive timeout below it",
        parse_int,
        "SECONDS",
    )
    max_pending_connections: int = option(
        512,
        "most connections waiting for a complete request (beyond it the longest-waiting is "
        "closed), and most socket-ingest connections; half of 'ulimit -n' 1024",
        parse_int,
        "N",
    )

    # -- operations (dashboard, metrics, logs): options added here -------------------------
    dashboard: bool = option(
        _ON,
        "serve the live dashboard at / (one self-contained page; protected like the API "
        "when authentication is on)",
        parse_bool,
        "BOOL",
    )
    metrics: bool = option(
        _ON,
        "serve Prometheus metrics at /metrics (read from the broker's counters at scrape "
        "time, so publishing pays almost nothing for them)",
        parse_bool,
        "BOOL",
    )
    log_format: str = option(
        "text",
        "log format: text (readable lines) or json (one object per line, for log shippers)",
        parse_choice(("text", "json")),
        "FORMAT",
    )
    gc_threshold: int = option(
        50_000,
        "allocations between young-generation garbage collections in `ssehub serve` "
        "(Python's default is 700); with thousands of open streams each collection scans "
        "their long-lived objects, which cost 20-30 % of the CPU per delivery in fan-out "
        "(benchmarks/RESULTS.md); 0 keeps Python's setting",
        parse_int,
        "N",
    )

    # -- Mercure protocol (ssehub.hub._mercure_settings): options added here ------------------
    mercure: bool = option(*_MERCURE["mercure"])
    mercure_jwt_key: str | None = option(*_MERCURE["mercure_jwt_key"])
    mercure_publisher_jwt_key: str | None = option(*_MERCURE["mercure_publisher_jwt_key"])
    mercure_subscriber_jwt_key: str | None = option(*_MERCURE["mercure_subscriber_jwt_key"])
    mercure_jwt_alg: str = option(*_MERCURE["mercure_jwt_alg"])
    mercure_anonymous: bool = option(*_MERCURE["mercure_anonymous"])
    mercure_cors_origins: tuple[str, ...] = option(*_MERCURE["mercure_cors_origins"])
    mercure_topics: tuple[str, ...] = option(*_MERCURE["mercure_topics"])
    mercure_subscriptions: bool = option(*_MERCURE["mercure_subscriptions"])

    def __post_init__(self) -> None:
        check_settings(self)  # including the HTTP limits (check_http_limits)
        _history.HistoryBudget.of(self)  # checks the byte budgets (ConfigurationError)

    @classmethod
    def from_sources(
        cls,
        cli: Mapping[str, str | None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> HubSettings:
        """Build settings from command-line text values, then the environment, then defaults.

        Args:
            cli: option name -> text given on the command line, ``None`` when not given.
            env: the environment (usually ``os.environ``); ``SSEHUB_<NAME>`` is read for each
                option, for example ``SSEHUB_PORT``.

        Returns:
            The settings.

        Raises:
            ConfigurationError: a value cannot be parsed or is out of range; the message names
                the flag or the variable it came from.
        """
        cli = cli or {}
        env = with_mercure_environment(env or {})  # MERCURE_*_JWT_KEY, as the Mercure hub reads
        values: dict[str, Any] = {}
        for spec in options():
            given = cli.get(spec.name)
            source = spec.flag
            if given is None:
                given = env.get(spec.env)
                source = spec.env
            if given is None:
                continue
            try:
                values[spec.name] = spec.parse(given)
            except ValueError as exc:
                raise ConfigurationError(f"{source}: {exc} (got {given!r})") from None
        return cls(**values)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> HubSettings:
        """Build settings from ``SSEHUB_<NAME>`` environment variables, then defaults.

        What :func:`ssehub.hub.create_app` uses when it is given no settings, so a hub started
        by any ASGI server reads the same variables as ``ssehub serve``.

        Args:
            env: the environment; ``os.environ`` when ``None``.

        Returns:
            The settings.

        Raises:
            ConfigurationError: a variable cannot be parsed or is out of range; the message
                names the variable.
        """
        return cls.from_sources(None, os.environ if env is None else env)

    def replace(self, **changes: Any) -> HubSettings:
        """Return a copy with ``changes`` applied (validated again).

        Raises:
            ConfigurationError: a changed value is out of range.
        """
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class OptionSpec:
    """How one :class:`HubSettings` field appears on the command line and in the environment.

    Attributes:
        name: the field name (``max_connection_age``).
        flag: the command-line flag (``--max-connection-age``).
        env: the environment variable (``SSEHUB_MAX_CONNECTION_AGE``).
        default: the field's default.
        help: one-line description, with the reason for the default.
        metavar: the placeholder shown in ``--help``.
        parse: text -> value; raises ``ValueError`` with a short message.
    """

    name: str
    flag: str
    env: str
    default: Any
    help: str
    metavar: str
    parse: Callable[[str], Any]


def options() -> Iterator[OptionSpec]:
    """Yield the specification of every :class:`HubSettings` option, in declaration order."""
    for f in dataclasses.fields(HubSettings):
        yield OptionSpec(
            name=f.name,
            flag="--" + f.name.replace("_", "-"),
            env=ENV_PREFIX + f.name.upper(),
            default=f.default,
            help=f.metadata["help"],
            metavar=f.metadata["metavar"],
            parse=f.metadata["parse"],
        )
