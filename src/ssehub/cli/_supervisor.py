"""``ssehub serve --workers N``: N hub processes on one listening socket, sharing a Redis broker.

Why not uvicorn's own ``workers=``: its worker processes run uvicorn's plain ``Server`` from an
import string, so they would lose what ``ssehub serve`` adds (ending every event stream cleanly
on SIGTERM instead of waiting out the grace period, the startup log), and its supervisor classes
are internal API. This supervisor is small: the parent binds the socket once (uvicorn's
``Config.bind_socket``, so hosts, IPv6 and errors behave as with one process), spawns N
processes that each run :func:`ssehub.cli.serve.serve` on that socket (the kernel spreads new
connections over their ``accept`` calls), and waits, without polling, for a signal or for a
worker to exit.

- SIGTERM or SIGINT: sent on to every worker as SIGTERM; each drains its streams and exits
  within the grace period. The parent waits for all of them and exits 0 (1 if a worker had to
  be killed after the grace period plus :data:`_KILL_MARGIN`, or failed).
- A worker of the first set that cannot start (exit status 1: port taken, Redis unreachable,
  bad settings) stops the whole group with exit status 1: the others would fail the same way.
- A worker that dies later (killed, crashed), or a replacement that cannot start (Redis is
  restarting, say), is replaced, so one bad moment does not shrink the group for good; its
  clients reconnect to the others and resume with ``Last-Event-ID``. More than
  :data:`_MAX_RESTARTS` replacements within :data:`_RESTART_WINDOW` seconds stop the group
  instead (exit 1), rather than restart a crashing worker forever.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    from ..hub import HubSettings

__all__ = ["SHARED_BROKER_SCHEMES", "check_workers", "supervise"]

logger = logging.getLogger("ssehub.hub")

SHARED_BROKER_SCHEMES: Final = frozenset({"redis", "rediss"})
"""Brokers that several processes can share: only these allow ``--workers`` above 1."""

_KILL_MARGIN: Final = 5.0
"""Seconds past the grace period before a worker that has not exited is killed: room for the
lifespan to close the broker after the streams ended."""

_MAX_RESTARTS: Final = 5
_RESTART_WINDOW: Final = 60.0
"""A worker dying more than 5 times a minute is a crash loop, not bad luck (systemd's default
start limit is likewise 5 starts in 10 s)."""

_STARTUP_FAILED: Final = 1  # ``serve`` returns 1 when the server could not start


def check_workers(settings: HubSettings) -> None:
    """Refuse settings that several worker processes cannot serve correctly.

    Args:
        settings: the hub's settings.

    Raises:
        ConfigurationError: ``workers`` is below 1; or above 1 with a broker that lives in one
            process (``memory://``), or with a socket ingest (each worker would bind it).
    """
    workers = settings.workers
    if workers < 1:
        raise ConfigurationError(f"workers must be at least 1, not {workers}")
    if workers == 1:
        return
    scheme = urlsplit(settings.broker).scheme.lower()
    if scheme not in SHARED_BROKER_SCHEMES:
        raise ConfigurationError(
            f"--workers {workers} needs a shared broker such as redis://127.0.0.1:6379/0, not "
            f"{scheme}://: the {scheme} broker lives inside one process, so each worker would "
            "have its own topics and history, and subscribers on one worker would miss events "
            "published on another"
        )
    if settings.socket is not None or settings.ingest_port is not None:
        raise ConfigurationError(
            f"--workers {workers} cannot be combined with --socket or --ingest-port: every "
            "worker would try to bind it; run the ingest in a separate single-worker hub"
        )


def _run_worker(settings: HubSettings, sock: socket.socket) -> None:
    """The body of one worker process (module level, so the spawn start method can find it)."""
    from .serve import serve

    sys.exit(serve(settings.replace(workers=1), sockets=[sock]))


class _Wakeup:
    """Signals become a byte on a socket pair, so the parent waits on one ``wait()`` call for a
    signal or a worker's exit (a plain handler would only interrupt a wait, not end it)."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # noqa: FBT003 - the stdlib's signature
        self._stop = False
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True
        with contextlib.suppress(OSError):  # the pair is full: a wake-up is pending anyway
            self._writer.send(b"\0")

    def stopping(self) -> bool:
        """Whether SIGTERM or SIGINT has arrived."""
        return self._stop

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.reader.close()
        self._writer.close()


def supervise(settings: HubSettings) -> int:
    """Run ``settings.workers`` hub processes on one socket until SIGTERM or SIGINT.

    Args:
        settings: the hub's settings (checked with :func:`check_workers`).

    Returns:
        0 after every worker shut down cleanly; 1 if the socket could not be bound, a worker
        could not start, workers kept crashing, or one had to be killed.

    Raises:
        ConfigurationError: the settings cannot run several workers.
        MissingDependency: uvicorn (the ``hub`` extra) is not installed.
    """
    check_workers(settings)
    from .serve import _log_config, load_uvicorn

    uvicorn = load_uvicorn()
    logging.config.dictConfig(_log_config(settings.log_level, settings.log_format))
    config = uvicorn.Config("ssehub.hub:create_app", host=settings.host, port=settings.port)
    try:
        sock: socket.socket = config.bind_socket()
    except SystemExit:  # uvicorn logged why (address in use, permission)
        return 1
    # uvicorn's own supervisor does the same: sockets travel to spawned children by pickling.
    multiprocessing.allow_connection_pickling()
    context = multiprocessing.get_context("spawn")  # fork would copy the parent's threads/state
    wakeup = _Wakeup()

    def start() -> SpawnProcess:
        process = context.Process(target=_run_worker, args=(settings, sock), name="ssehub-worker")
        process.start()
        return process

    workers = [start() for _ in range(settings.workers)]
    first = set(workers)
    logger.info(
        "ssehub supervisor [%d]: %d workers %s on port %d",
        os.getpid(),
        len(workers),
        [process.pid for process in workers],
        sock.getsockname()[1],
    )
    restarts: list[float] = []
    status = 0
    try:
        while not wakeup.stopping():
            multiprocessing.connection.wait([wakeup.reader, *(p.sentinel for p in workers)])
            if wakeup.stopping():
                break
            for index, process in enumerate(workers):
                if process.is_alive():
                    continue
                process.join()
                if process.exitcode == _STARTUP_FAILED and process in first:
                    logger.error("worker [%s] could not start; stopping", process.pid)
                    return _stop(workers, settings, status=1)
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < _RESTART_WINDOW] + [now]
                if len(restarts) > _MAX_RESTARTS:
                    logger.error("workers keep dying (%d in a minute); stopping", len(restarts))
                    return _stop(workers, settings, status=1)
                logger.warning(
                    "worker [%s] died (exit status %s); starting a new one",
                    process.pid,
                    process.exitcode,
                )
                workers[index] = start()
        logger.info("ssehub supervisor: stopping %d workers", len(workers))
        return _stop(workers, settings, status=status)
    finally:
        wakeup.close()
        sock.close()


def _stop(workers: list[SpawnProcess], settings: HubSettings, *, status: int) -> int:
    """SIGTERM every live worker, wait for all (killing any past the grace period)."""
    for process in workers:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.grace_period + _KILL_MARGIN
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            logger.error("worker [%s] did not stop in time; killing it", process.pid)
            process.kill()
            process.join()
            status = 1
        elif process.exitcode not in (0, None, -signal.SIGTERM) and status == 0:
            # -SIGTERM: our signal reached a worker still starting, before it had handlers
            # (and so before it had any client): a clean stop too.
            status = 1
    return status
