"""``ssehub serve``: run the hub under uvicorn (uvloop and httptools when available).

Every flag is generated from :class:`ssehub.hub.HubSettings`, and each also reads
``SSEHUB_<NAME>`` from the environment (``--port`` / ``SSEHUB_PORT``); the command line wins.

Shutdown on SIGTERM or SIGINT: uvicorn stops accepting connections, the hub is marked draining
(``/health`` answers 503) and every event stream is told to end through the shared shutdown
event, so open streams finish with a clean end of body (uvicorn by itself only waits for them).
Whatever is still running after ``--grace-period`` seconds is cancelled. The exit code is 0.

HTTP limits (head size and field count, header and body timeouts, the cap on connections waiting
for a request) are kept in front of uvicorn's protocol by :mod:`ssehub.cli._http_limits`, the one
module that touches the server seam; the idle keep-alive timeout is uvicorn's own.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import logging.config
import os
import signal
import socket
import sys
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigurationError, MissingDependency

if TYPE_CHECKING:
    from ..hub import HubSettings
    from ..hub._app import HubState

__all__ = [
    "add_parser",
    "check_channels_workers",
    "choose_implementations",
    "load_uvicorn",
    "run",
    "serve",
]

logger = logging.getLogger("ssehub.hub")

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the ``serve`` options, one per :class:`~ssehub.hub.HubSettings` field.

    Args:
        parser: the ``serve`` subcommand's parser.
    """
    try:
        from ..hub._settings import options
    except MissingDependency as exc:
        # Without the hub extra, the other commands still work and this one says what to
        # install (when it runs, whatever its arguments).
        parser.description = f"run the hub server; {exc}"
        parser.set_defaults(_any_arguments=True)
        return
    parser.epilog = "Every option can also be set with the environment variable shown."
    for spec in options():
        default = "none" if spec.default is None else spec.default
        if spec.name == "socket_mode":
            default = f"{spec.default:o}"  # a file mode reads as octal, as chmod takes it
        help_text = f"{spec.help} (env {spec.env}; default {default})".replace("%", "%%")
        # An on/off option is also a bare switch: `--mercure` alone is `--mercure true`.
        switch: dict[str, Any] = (
            {"nargs": "?", "const": "true"} if isinstance(spec.default, bool) else {}
        )
        parser.add_argument(
            spec.flag, dest=spec.name, default=None, metavar=spec.metavar, help=help_text, **switch
        )
        # -- operations: `--no-dashboard` style switches for every on/off option
        if isinstance(spec.default, bool):
            parser.add_argument(
                "--no-" + spec.flag[2:],
                dest=spec.name,
                action="store_const",
                const="false",
                help=f"same as {spec.flag} false",
            )


def run(args: argparse.Namespace) -> int:
    """Run the hub until SIGTERM or SIGINT; return the exit code.

    Args:
        args: the parsed command line (``None`` for options not given).

    Returns:
        0 after a clean shutdown, 1 if the server could not start or the ``hub`` extra is
        missing, 2 for invalid settings.
    """
    try:
        from ..hub._settings import HubSettings, options
        from ..hub._settings_checks import unknown_variables
    except MissingDependency as exc:
        print(f"ssehub serve: {exc}", file=sys.stderr)
        return 1
    cli = {spec.name: getattr(args, spec.name, None) for spec in options()}
    unknown = unknown_variables(os.environ, [spec.env for spec in options()])
    try:
        settings = HubSettings.from_sources(cli, os.environ)
        check_channels_workers(settings)
    except ConfigurationError as exc:
        # A misspelt variable may be why the settings are refused: named first.
        for warning in unknown:
            print(f"ssehub serve: warning: {warning}", file=sys.stderr)
        print(f"ssehub serve: {exc}", file=sys.stderr)
        return 2
    if unknown:
        # In the log's own format (--log-format json makes every line a JSON object).
        logging.config.dictConfig(_log_config(settings.log_level, settings.log_format))
        for warning in unknown:
            logger.warning("%s", warning)
    try:
        if settings.workers != 1:  # -- scaling: N processes under a small supervisor
            from ._supervisor import supervise

            try:
                return supervise(settings)
            except ConfigurationError as exc:  # memory:// cannot be shared, for example
                print(f"ssehub serve: {exc}", file=sys.stderr)
                return 2
        return serve(settings)
    except MissingDependency as exc:
        print(f"ssehub serve: {exc}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:  # -- security: an unusable key, JWKS or API key file
        print(f"ssehub serve: {exc}", file=sys.stderr)
        return 2


def check_channels_workers(settings: HubSettings) -> None:
    """Refuse ``--workers`` above 1 with channels on a shared (Redis) broker.

    Redis shares topics between processes, but a channel, its listeners and their queued
    messages live in the process that created them, and the kernel hands each connection to any
    worker: a listener created on one worker would be unknown (404) to the others. Other brokers
    are refused for ``--workers`` anyway, with their own reason (``check_workers``).

    Args:
        settings: the hub's settings.

    Raises:
        ConfigurationError: the combination is asked for; the message is one line, with the way
            out.
    """
    from ._supervisor import SHARED_BROKER_SCHEMES

    scheme = settings.broker.partition("://")[0].lower()
    if settings.workers > 1 and settings.channels and scheme in SHARED_BROKER_SCHEMES:
        raise ConfigurationError(
            f"--workers {settings.workers} cannot serve channels: channels keep per-process "
            "state (a listener and its messages live in the worker that created it; Redis shares "
            "only topics), so the other workers would answer 404; add --no-channels "
            "(SSEHUB_CHANNELS=false) or run one worker"
        )


def load_uvicorn() -> ModuleType:
    """Import uvicorn, which the ``hub`` extra provides.

    Returns:
        The ``uvicorn`` module.

    Raises:
        MissingDependency: uvicorn is not installed; the message names ``ssehub[hub]``.
    """
    try:
        return importlib.import_module("uvicorn")
    except ImportError as exc:
        raise MissingDependency("uvicorn", "hub") from exc


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def choose_implementations(http: str = "auto") -> tuple[str, str, list[str]]:
    """Pick uvicorn's event loop and HTTP parser: uvloop and httptools when importable.

    Args:
        http: the parser asked for (``--http``): ``auto`` (httptools when importable, else
            h11), ``httptools`` or ``h11``.

    Returns:
        ``(loop, http, warnings)``: uvicorn's ``loop`` and ``http`` settings, and a message for
        each fallback taken (to be logged once logging is configured).

    Raises:
        ConfigurationError: ``httptools`` is asked for and not installed.
    """
    warnings: list[str] = []
    loop = "uvloop"
    if sys.platform == "win32" or not _importable("uvloop"):
        loop = "asyncio"
        warnings.append("uvloop is not available; using the asyncio event loop (slower)")
    if http == "auto":
        http = "httptools"
        if not _importable("httptools"):
            http = "h11"
            warnings.append("httptools is not available; using h11 (slower)")
    elif http == "httptools" and not _importable("httptools"):
        raise ConfigurationError("--http httptools: httptools is not installed")
    return loop, http, warnings


def _log_config(level: str, fmt: str) -> dict[str, Any]:
    # -- operations: one handler for uvicorn's loggers and "ssehub" (readable text or JSON
    # lines), with request ids and secrets redacted, honouring --log-level.
    from .._logging import logging_config

    return logging_config(level, fmt)


class _EarlySignals:
    """Notes SIGTERM/SIGINT while uvicorn's own handlers are not installed.

    uvicorn re-raises the signal that stopped it once its handlers are removed (so that the
    default action, termination by signal, happens). With this handler in place instead of the
    default one, that re-raise is absorbed and ``ssehub serve`` exits 0 as documented. A signal
    that arrives before uvicorn is listening is remembered and makes the server stop at once.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = True


def tune_garbage_collector(threshold: int) -> None:
    """Make young-generation collections rarer in the server process (``--gc-threshold``).

    The hub's objects are few and long-lived (streams, subscriptions, their tasks), while a
    delivery allocates short-lived ones; every collection of the young generation also walks
    the objects that survived into it. At Python's default of 700 allocations that happens
    hundreds of times per second in fan-out. A process-wide setting, so it belongs here and
    not in the library. Older generations keep Python's ratios.

    Args:
        threshold: allocations between young-generation collections; 0 changes nothing.
    """
    if threshold > 0:
        _, second, third = gc.get_threshold()
        gc.set_threshold(threshold, second, third)


def serve(settings: HubSettings, *, sockets: list[socket.socket] | None = None) -> int:
    """Run the hub described by ``settings`` under uvicorn until SIGTERM or SIGINT.

    Args:
        settings: the hub's settings.
        sockets: listening sockets to serve instead of binding ``host:port`` (a worker of
            ``--workers N`` gets the one its supervisor bound).

    Returns:
        0 after a clean shutdown, 1 if the server failed to start.

    Raises:
        MissingDependency: uvicorn (the ``hub`` extra) is not installed.
        ConfigurationError: ``--http httptools`` without httptools installed.
    """
    uvicorn = load_uvicorn()
    from ..hub import create_app
    from ._http_limits import HttpLimits, http_protocol

    loop, http, fallback_warnings = choose_implementations(settings.http)
    tune_garbage_collector(settings.gc_threshold)
    app = create_app(settings)
    hub: HubState = app.state.hub
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=loop,
        # -- security: the limits of ssehub.cli._http_limits in front of uvicorn's parser
        http=http_protocol(uvicorn, http, HttpLimits.from_settings(settings)),
        h11_max_incomplete_event_size=settings.max_header_size,
        timeout_keep_alive=settings.keep_alive_timeout,
        lifespan="on",
        log_level=settings.log_level,
        log_config=_log_config(settings.log_level, settings.log_format),
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.grace_period,
        # -- security: the hub decides client addresses itself, from --trusted-proxies only
        proxy_headers=False,
    )
    early = _EarlySignals()

    class HubServer(uvicorn.Server):  # type: ignore[misc, name-defined]
        """uvicorn's server, plus: log where the hub listens, and drain the hub on shutdown."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            for message in fallback_warnings:
                logger.warning(message)
            await super().startup(sockets=sockets)
            if not self.started:
                return
            _log_listening(settings, self.servers, loop=loop, http=http)
            if settings.queue_size >= settings.history:
                logger.warning(
                    "--queue-size %d is not below --history %d: a subscriber shed for being "
                    "that far behind may no longer resume from history (it gets a reset)",
                    settings.queue_size,
                    settings.history,
                )
            if early.received:
                self.should_exit = True

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Stop accepting first, then end every stream through the hub's shutdown event:
            # uvicorn alone would wait for streaming responses until the grace period expires.
            for server in self.servers:
                server.close()
            hub.drain()
            logger.info(
                "draining: ending open event streams (grace period %g s)", settings.grace_period
            )
            await super().shutdown(sockets=sockets)

    server = HubServer(config)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, early) for sig in handled}
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:
        # uvicorn exits this way when it cannot bind (1) or the lifespan fails (3).
        logger.error(  # noqa: TRY400 - uvicorn already logged the cause; no traceback wanted
            "the hub could not start (uvicorn exit status %s)", exc.code
        )
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _log_listening(settings: HubSettings, servers: list[Any], *, loop: str, http: str) -> None:
    addresses = []
    for server in servers:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            addresses.append(f"http://{shown}:{port}")
    logger.info(
        "ssehub hub listening on %s (broker %s, history %d events per topic, ping %g s, "
        "event loop %s, HTTP parser %s)",
        ", ".join(addresses) or f"{settings.host}:{settings.port}",
        settings.broker,
        settings.history,
        settings.ping,
        loop,
        http,
    )
    if settings.mercure:  # before the "authentication is" line, the last of the startup log
        logger.info(
            "Mercure hub at /.well-known/mercure (JWT %s; anonymous subscribers: %s; "
            "subscriptions API: %s)",
            settings.mercure_jwt_alg,
            "allowed, public updates only" if settings.mercure_anonymous else "refused",
            "on" if settings.mercure_subscriptions else "off",
        )
    exposed = settings.host not in _LOOPBACK_HOSTS
    if settings.auth != "none":
        # -- security: say which credentials are accepted, and whether anonymous reads are on
        logger.info(
            "authentication is ON (%s%s); anonymous subscribers: %s",
            f"JWT {settings.jwt_algorithm}" if settings.auth == "jwt" else "API keys",
            " and API keys" if settings.auth == "jwt" and settings.api_keys_file else "",
            "allowed, public events only" if settings.anonymous_subscribe else "refused",
        )
        return
    logger.log(
        logging.WARNING if exposed else logging.INFO,
        "authentication is OFF: anyone who can reach %s can publish and subscribe",
        settings.host,
    )
