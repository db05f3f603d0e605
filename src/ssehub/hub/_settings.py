"""The hub's settings: one frozen dataclass, filled from defaults, ``SSEHUB_<NAME>`` and the CLI.

Every option is declared once, as a dataclass field whose metadata carries its help text and its
text parser. ``ssehub serve`` builds its command-line flags from that metadata, and
:meth:`HubSettings.from_sources` reads the same names from the environment, so a flag, its
variable and its documentation cannot drift apart. Precedence: command line, then environment,
then the default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._exceptions import ConfigurationError
from ..broker import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    DEFAULT_MAX_TOPICS,
    DEFAULT_QUEUE_SIZE,
)
from ..broker.topics import MAX_TOPIC_LENGTH
from ._proxy import parse_networks

__all__ = ["ENV_PREFIX", "HubSettings", "OptionSpec", "options"]

ENV_PREFIX: Final = "SSEHUB_"
"""Environment variables are named ``SSEHUB_`` + the option name in upper case."""

_SLOW_POLICIES: Final = ("disconnect", "drop_oldest", "block")
_LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_NONE: Final = frozenset({"", "none", "off"})
_ON: Final = True
_OFF: Final = False


def _parse_int(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    return value


def _parse_optional_seconds(text: str) -> float | None:
    # "0", "none" and "off" all mean "disabled": the natural spellings in a shell or a YAML file.
    if text.strip().lower() in _NONE:
        return None
    value = _parse_float(text)
    return None if value == 0 else value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower().replace("-", "_")
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return parse


def _parse_optional_text(text: str) -> str | None:
    # -- channels and socket ingest: parsers for their options
    stripped = text.strip()
    return None if stripped.lower() in _NONE else stripped


def _parse_octal(text: str) -> int:
    try:
        return int(text.strip().removeprefix("0o"), 8)
    except ValueError:
        raise ValueError("expected an octal file mode such as 600") from None


def _parse_optional_port(text: str) -> int | None:
    if text.strip().lower() in {"", "none", "off"}:
        return None
    return _parse_int(text)


def _parse_upper_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return parse


def _parse_optional_str(text: str) -> str | None:
    # -- security: "" and "none" unset a path or key given elsewhere (env, then CLI)
    stripped = text.strip()
    return None if stripped.lower() in _NONE else stripped


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _option(default: object, help: str, parse: Callable[[str], Any], metavar: str) -> Any:
    return field(default=default, metadata={"help": help, "parse": parse, "metavar": metavar})


@dataclass(frozen=True)
class HubSettings:
    """Every option of the hub, with defaults chosen for a hub that browsers connect to.

    Construct it directly in Python (``HubSettings(history=5000)``), or with
    :meth:`from_sources` from command-line values and ``SSEHUB_<NAME>`` environment variables.

    Raises:
        ConfigurationError: a value is out of range (checked on construction).
    """

    host: str = _option(
        "127.0.0.1",
        "interface to listen on; loopback by default because authentication is not enabled",
        str,
        "HOST",
    )
    port: int = _option(8000, "TCP port to listen on (0 picks a free port)", _parse_int, "PORT")
    broker: str = _option(
        "memory://",
        "broker backend URL: memory:// (one process) or redis://host:port/db",
        str,
        "URL",
    )
    history: int = _option(
        DEFAULT_HISTORY_SIZE,
        "events kept per topic for Last-Event-ID resume; Mercure's order of magnitude: about "
        "1 MiB per topic at 1 KiB per event while covering minutes of a busy feed",
        _parse_int,
        "N",
    )
    history_ttl: float = _option(
        DEFAULT_HISTORY_TTL,
        "seconds an event stays in history; one hour outlasts laptop sleeps, tunnels and "
        "deploys, after which clients get an honest 'expired' reset",
        _parse_float,
        "SECONDS",
    )
    ping: float = _option(
        15.0,
        "seconds between heartbeat comments on an idle stream; 15 s stays below the 30-60 s "
        "idle timeouts of common proxies and load balancers (nginx 60 s, AWS ALB 60 s)",
        _parse_float,
        "SECONDS",
    )
    max_connection_age: float | None = _option(
        None,
        "end each stream after about this many seconds (with jitter) so clients rotate across "
        "servers and half-open connections are reaped; 0/none = never (default)",
        _parse_optional_seconds,
        "SECONDS",
    )
    queue_size: int = _option(
        DEFAULT_QUEUE_SIZE,
        "events buffered per subscriber before the slow-consumer policy applies; half of "
        "--history, so that a subscriber shed for being this far behind can still resume "
        "from history",
        _parse_int,
        "N",
    )
    slow_policy: str = _option(
        "disconnect",
        "what to do with a subscriber whose queue is full: disconnect (default; it reconnects "
        "and catches up from history), drop_oldest, or block (stalls publishers: never for "
        "browsers)",
        _parse_choice(_SLOW_POLICIES),
        "POLICY",
    )
    send_timeout: float | None = _option(
        10.0,
        "seconds a client may take to accept one write before its stream is ended (0/none = "
        "never); 10 s is NATS's write deadline: a frozen client cannot pin a stream forever",
        _parse_optional_seconds,
        "SECONDS",
    )
    grace_period: float = _option(
        10.0,
        "seconds to let streams end on SIGTERM/SIGINT before tasks are cancelled; well inside "
        "Kubernetes' default 30 s termination grace period",
        _parse_float,
        "SECONDS",
    )
    max_body_size: int = _option(
        1024 * 1024,
        "largest POST /publish body in bytes (413 above it); 1 MiB is nginx's "
        "client_max_body_size default",
        _parse_int,
        "BYTES",
    )
    max_topics: int = _option(
        DEFAULT_MAX_TOPICS,
        "most topics in one subscription or one published event; 32 topics of up to 256 "
        "characters keep a GET /events URL under the 8 KiB request-line limit of common proxies",
        _parse_int,
        "N",
    )
    max_batch: int = _option(
        1000,
        "most events in one POST /publish batch (413 above it); bounds the time one request "
        "holds the broker",
        _parse_int,
        "N",
    )
    docs: bool = _option(
        _ON,
        "serve /openapi.json and the /docs page",
        _parse_bool,
        "BOOL",
    )
    log_level: str = _option(
        "info",
        "log level: critical, error, warning, info, debug, trace",
        _parse_choice(_LOG_LEVELS),
        "LEVEL",
    )
    access_log: bool = _option(
        _OFF,
        "log every request; off by default because one log line costs more than a publish",
        _parse_bool,
        "BOOL",
    )

    # -- scaling (Redis, --workers): options added here ------------------------------------
    workers: int = _option(
        1,
        "hub processes serving one socket (about one per core); above 1 needs a shared broker "
        "(redis://): the memory broker lives inside one process",
        _parse_int,
        "N",
    )

    # -- channels and socket ingest: options added here -----------------------------------

    channels: bool = _option(
        _ON,
        "serve the channel routes (/channels...): listeners addressed by id, broadcast and "
        "dispatch",
        _parse_bool,
        "BOOL",
    )
    max_channels: int = _option(
        1000,
        "most channels at once; bounds what clients allowed to create channels can allocate",
        _parse_int,
        "N",
    )
    max_listeners: int = _option(
        10_000,
        "most listeners per channel; each costs a queue, so a client creating listeners in a "
        "loop cannot exhaust memory",
        _parse_int,
        "N",
    )
    listener_linger: float = _option(
        30.0,
        "seconds a channel listener without a connected client is kept, so a client that "
        "reconnects (EventSource retries after about 3 s) resumes with Last-Event-ID; then it "
        "is removed (0: as soon as its client disconnects)",
        _parse_float,
        "SECONDS",
    )
    socket: str | None = _option(
        None,
        "also accept newline-delimited JSON commands (publish, broadcast, dispatch) on this "
        "Unix socket path; none = off",
        _parse_optional_text,
        "PATH",
    )
    socket_mode: int = _option(
        0o600,
        "permissions of the Unix socket, in octal; 600 lets only the hub's user write to it",
        _parse_octal,
        "MODE",
    )
    ingest_port: int | None = _option(
        None,
        "also accept the socket commands on this TCP port (0 picks a free one); none = off",
        _parse_optional_port,
        "PORT",
    )
    ingest_host: str = _option(
        "127.0.0.1",
        "interface of the TCP ingest port; loopback by default because ingest has no "
        "authentication",
        str,
        "HOST",
    )

    # -- security (auth, CORS, limits, proxies): options added here ------------------------
    auth: str = _option(
        "none",
        "authentication: none (default, for local development: anyone who can connect may "
        "publish and subscribe), jwt (JSON Web Tokens, plus API keys if a key file is given) "
        "or api_key (static keys only)",
        _parse_choice(("none", "jwt", "api_key")),
        "MODE",
    )
    jwt_algorithm: str = _option(
        "HS256",
        "the one JWT algorithm accepted, never taken from the token: HS256, RS256 or ES256",
        _parse_upper_choice(("HS256", "RS256", "ES256")),
        "ALG",
    )
    jwt_key: str | None = _option(
        None,
        "the HS256 secret (32+ bytes) or the PEM public key; prefer SSEHUB_JWT_KEY or "
        "--jwt-key-file, since command lines are visible to other local users",
        _parse_optional_str,
        "KEY",
    )
    jwt_key_file: str | None = _option(
        None, "file holding the HS256 secret or the PEM public key", _parse_optional_str, "PATH"
    )
    jwks_file: str | None = _option(
        None,
        "file holding a JSON Web Key Set; the key is chosen by the token's kid",
        _parse_optional_str,
        "PATH",
    )
    jwt_audience: str | None = _option(
        None, "when set, tokens must carry this aud claim", _parse_optional_str, "AUD"
    )
    jwt_issuer: str | None = _option(
        None, "when set, tokens must carry this iss claim", _parse_optional_str, "ISS"
    )
    jwt_leeway: float = _option(
        0.0,
        "seconds of clock skew tolerated on exp and nbf; 0 because issuer and hub usually "
        "share NTP time, and every second of leeway extends a revoked token's life",
        _parse_float,
        "SECONDS",
    )
    api_keys_file: str | None = _option(
        None,
        "file of static API keys for server-to-server clients: one key (16+ characters) per "
        "line, optionally followed by the topic patterns it is limited to",
        _parse_optional_str,
        "PATH",
    )
    auth_cookie: str = _option(
        "ssehub_token",
        "name of the cookie holding a token (browsers' EventSource cannot send headers); "
        "empty to ignore cookies",
        str,
        "NAME",
    )
    auth_query_token: bool = _option(
        _OFF,
        "accept a token in the 'token' query parameter; off because URLs end up in access "
        "logs, proxies and browser history",
        _parse_bool,
        "BOOL",
    )
    anonymous_subscribe: bool = _option(
        _OFF,
        "with auth on, let clients without a credential subscribe to any topic (they get "
        "public events only); off so that an auth-enabled hub is closed by default",
        _parse_bool,
        "BOOL",
    )
    cors_origins: tuple[str, ...] = _option(
        (),
        "comma-separated origins allowed to call the hub from a browser (exact origins get "
        "credentials; '*' allows any origin without credentials); none by default",
        _parse_list,
        "ORIGINS",
    )
    trusted_proxies: tuple[str, ...] = _option(
        (),
        "comma-separated addresses or networks of reverse proxies whose X-Forwarded-For / "
        "Forwarded headers are believed; none by default, so clients cannot spoof addresses",
        _parse_list,
        "NETWORKS",
    )
    max_connections: int = _option(
        10_000,
        "most open event streams (429 above it); 10 000 idle streams use a few hundred MiB "
        "and need 'ulimit -n' above it (the common soft default is 1024)",
        _parse_int,
        "N",
    )
    max_connections_per_address: int = _option(
        100,
        "most open streams from one client address; browsers open at most 6 HTTP/1.1 "
        "connections per site, 100 leaves room for an office behind one NAT while one client "
        "cannot take more than 1% of the default total",
        _parse_int,
        "N",
    )
    max_connections_per_token: int = _option(
        20,
        "most open streams with one token or API key; covers a user's tabs and devices, "
        "bounds what one leaked token can hold",
        _parse_int,
        "N",
    )
    max_topic_length: int = _option(
        256,
        "longest topic name in characters (at most 256, the broker's bound); topics use URI "
        "characters only (RFC 3986), so they are safe in URLs, logs and Redis keys",
        _parse_int,
        "N",
    )
    max_last_event_id_length: int = _option(
        256,
        "longest Last-Event-ID accepted (400 above it); hub ids are under 64 characters, and "
        "a bound keeps a 10 KB header from reaching the history lookup",
        _parse_int,
        "N",
    )
    publish_rate: float | None = _option(
        None,
        "events per second each token (or address, without one) may publish, in bursts of "
        "--publish-burst; 0/none = off (default): publishers are usually trusted services "
        "whose normal rate the hub cannot guess; turn it on for browser or third-party "
        "publishers",
        _parse_optional_seconds,
        "RATE",
    )
    publish_burst: int = _option(
        1000,
        "largest burst of events above --publish-rate (and so the largest batch a limited "
        "publisher can send); equals the default --max-batch",
        _parse_int,
        "N",
    )

    # -- operations (dashboard, metrics, logs): options added here -------------------------
    dashboard: bool = _option(
        _ON,
        "serve the live dashboard at / (one self-contained page; protected like the API "
        "when authentication is on)",
        _parse_bool,
        "BOOL",
    )
    metrics: bool = _option(
        _ON,
        "serve Prometheus metrics at /metrics (read from the broker's counters at scrape "
        "time, so publishing pays almost nothing for them)",
        _parse_bool,
        "BOOL",
    )
    log_format: str = _option(
        "text",
        "log format: text (readable lines) or json (one object per line, for log shippers)",
        _parse_choice(("text", "json")),
        "FORMAT",
    )
    direct_write: bool = _option(
        _ON,
        "in `ssehub serve` with httptools, let a publish write each event straight to the "
        "connections of subscribers that have nothing queued, instead of waking one task per "
        "subscriber (a full connection buffer falls back to the queue, in order); false "
        "streams every event through ASGI send",
        _parse_bool,
        "BOOL",
    )
    gc_threshold: int = _option(
        50_000,
        "allocations between young-generation garbage collections in `ssehub serve` "
        "(Python's default is 700); with thousands of open streams each collection scans "
        "their long-lived objects, which cost 20-30 % of the CPU per delivery in fan-out "
        "(benchmarks/RESULTS.md); 0 keeps Python's setting",
        _parse_int,
        "N",
    )

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigurationError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be 0-65535, not {self.port}")
        if "://" not in self.broker:
            raise ConfigurationError(f"broker must be a URL such as memory://, not {self.broker!r}")
        if self.gc_threshold < 0:
            raise ConfigurationError(f"gc_threshold must not be negative, not {self.gc_threshold}")
        for name in ("history", "queue_size", "max_body_size", "max_topics", "max_batch"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.history_ttl > 0:
            raise ConfigurationError(f"history_ttl must be positive, not {self.history_ttl}")
        for name in ("max_connection_age", "send_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be positive or None, not {value}")
        if not self.ping > 0:
            raise ConfigurationError(f"ping must be positive, not {self.ping}")
        if self.grace_period < 0:
            raise ConfigurationError(f"grace_period must not be negative, not {self.grace_period}")
        if self.slow_policy not in _SLOW_POLICIES:
            raise ConfigurationError(
                f"slow_policy must be one of {', '.join(_SLOW_POLICIES)}, not {self.slow_policy!r}"
            )
        # -- channels and socket ingest: checks of their options
        for name in ("max_channels", "max_listeners"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.listener_linger < 0:
            raise ConfigurationError(
                f"listener_linger must not be negative, not {self.listener_linger}"
            )
        if not 0 <= self.socket_mode <= 0o777:
            raise ConfigurationError(
                f"socket_mode must be 000-777 (octal), not {self.socket_mode:o}"
            )
        if self.ingest_port is not None and not 0 <= self.ingest_port <= 65535:
            raise ConfigurationError(f"ingest_port must be 0-65535, not {self.ingest_port}")
        self._check_security()
        if self.log_level not in _LOG_LEVELS:
            raise ConfigurationError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}, not {self.log_level!r}"
            )

    def _check_security(self) -> None:
        # -- security: validation of the options above
        for name in (
            "max_connections",
            "max_connections_per_address",
            "max_connections_per_token",
            "max_topic_length",
            "max_last_event_id_length",
            "publish_burst",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_topic_length > MAX_TOPIC_LENGTH:
            raise ConfigurationError(f"max_topic_length must be at most {MAX_TOPIC_LENGTH}")
        if self.auth not in {"none", "jwt", "api_key"}:
            raise ConfigurationError(f"auth must be none, jwt or api_key, not {self.auth!r}")
        if self.jwt_leeway < 0:
            raise ConfigurationError("jwt_leeway must not be negative")
        if self.publish_rate is not None and not self.publish_rate > 0:
            raise ConfigurationError("publish_rate must be positive or None")
        for origin in self.cors_origins:
            if origin != "*" and ("://" not in origin or origin.endswith("/")):
                raise ConfigurationError(
                    f"CORS origins are '*' or scheme://host[:port] without a path, not {origin!r}"
                )
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(f"trusted_proxies: {exc}") from None

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
        env = env or {}
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
