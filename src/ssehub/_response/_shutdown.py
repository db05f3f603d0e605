"""Server shutdown: SIGINT and SIGTERM end every open event stream cleanly, on any server.

ASGI tells an app nothing when its server begins to shut down, and an event stream never ends
by itself: a server with open streams hangs on Ctrl-C, or cuts them in a way clients take for a
network error. Each running stream registers its ``shutdown`` callback with its event loop's
registry (no task per stream), and a handler chained in front of the process's Python SIGINT
and SIGTERM handlers ends them all, then calls the previous handler unchanged
(docs/ARCHITECTURE.md, "Signals"; docs/response.md for what it gives under each server).
:func:`drain_streams` also waits for the streams to end (for a lifespan's shutdown).

A ``shutdown_event`` given to several responses is watched by one task per event loop, not
one per stream (:func:`watch`).
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio
import anyio.lowlevel

from .._waiter import wait_shielded
from ._timers import running_loop

__all__ = ["drain_streams", "register", "shutdown_streams", "unregister", "unwatch", "watch"]

logger = logging.getLogger("ssehub.response")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Callback = Callable[[], object]


class _Registry:
    """The streams of one event loop, whether its shutdown was requested, and the shutdown
    events its streams watch."""

    __slots__ = ("ended", "events", "requested", "streams")

    def __init__(self) -> None:
        self.streams: dict[Callback, None] = {}
        self.requested = False
        self.ended: anyio.Event | None = None  # while drain_streams() waits for the last one
        self.events: dict[anyio.Event, _EventWatch] = {}

    def trigger(self) -> None:
        self.requested = True
        for callback in list(self.streams):
            try:
                callback()
            except Exception:  # noqa: PERF203 - one stream must not stop the others
                logger.exception("ending a stream for the shutdown failed")


class _EventWatch:
    """The one task that waits for a shared ``shutdown_event`` on an event loop and then ends
    every stream watching it; cancelled when the last stream stops watching first.

    A bare task under asyncio (``loop.create_task``), a system task under trio, as the alarm
    clock's timer: it serves streams of many requests, so no request's task group can own it.
    """

    __slots__ = ("callbacks", "event", "scope", "task")

    def __init__(self, event: anyio.Event) -> None:
        self.event = event
        self.callbacks: dict[Callback, None] = {}
        self.scope: anyio.CancelScope | None = None
        self.task: object = None  # the asyncio task (the loop keeps only a weak reference)

    def start(self) -> None:
        loop = running_loop()
        if loop is not None:
            # In an empty context, not a copy of the request's that happened to start it: the
            # task may outlive that request by hours.
            self.task = contextvars.Context().run(loop.create_task, self._run())
        else:
            import trio  # only reached under trio

            trio.lowlevel.spawn_system_task(self._run, name="ssehub shutdown_event watch")

    async def _run(self) -> None:
        if not self.callbacks:
            return  # every stream stopped watching before this task ran: nothing to cancel
        with anyio.CancelScope() as self.scope:
            await self.event.wait()
            for callback in list(self.callbacks):
                try:
                    callback()
                except Exception:  # noqa: PERF203 - one stream must not stop the others
                    logger.exception("ending a stream for its shutdown_event failed")
        self.scope = self.task = None


# One registry per event loop (the asyncio loop, or trio's token), freed with it.
_registries: weakref.WeakKeyDictionary[Any, _Registry] = weakref.WeakKeyDictionary()
_previous: dict[int, Callable[[int, FrameType | None], Any]] = {}


def _registry() -> _Registry:
    native: Any = anyio.lowlevel.current_token().native_token
    registry = _registries.get(native)
    if registry is None:
        registry = _registries[native] = _Registry()
    return registry


def register(callback: Callback) -> bool:
    """Register a running stream's ``callback`` for the shutdown of the current event loop.

    Returns:
        ``True`` if the shutdown was already requested: the caller must end at once (the
        callback is registered all the same, and :func:`unregister` must follow).
    """
    registry = _registry()
    registry.streams[callback] = None
    if threading.current_thread() is threading.main_thread():
        _chain_signals()
    return registry.requested


def unregister(callback: Callback) -> None:
    """Forget a stream's callback (it has ended); the last one puts the previous signal
    handlers back, so a finished run's handler never outlives it (a later ``trio.run`` would
    otherwise find it installed and install none of its own)."""
    registry = _registries.get(anyio.lowlevel.current_token().native_token)
    if registry is not None:
        registry.streams.pop(callback, None)
        if not registry.streams and registry.ended is not None:
            registry.ended.set()
            registry.ended = None
    if threading.current_thread() is threading.main_thread() and not any(
        registry.streams for registry in list(_registries.values())
    ):
        _unchain_signals()


def watch(event: anyio.Event, callback: Callback) -> bool:
    """Call ``callback`` once ``event`` is set; one task per event loop waits for each event.

    Returns:
        ``True`` if ``event`` is set already: the caller must end at once (nothing is
        registered then, and :func:`unwatch` is harmless).
    """
    if event.is_set():
        return True
    events = _registry().events
    watch = events.get(event)
    if watch is None:
        watch = events[event] = _EventWatch(event)
        watch.callbacks[callback] = None  # first: an eager task factory runs the task at once
        watch.start()
    else:
        watch.callbacks[callback] = None
    return False


def unwatch(event: anyio.Event, callback: Callback) -> None:
    """Forget ``callback`` (its stream has ended); the last one stops the event's task."""
    registry = _registries.get(anyio.lowlevel.current_token().native_token)
    watch = None if registry is None else registry.events.get(event)
    if registry is None or watch is None:
        return
    watch.callbacks.pop(callback, None)
    if not watch.callbacks:
        del registry.events[event]
        if watch.scope is not None:
            watch.scope.cancel()


def shutdown_streams() -> None:
    """End every :class:`~ssehub.EventSourceResponse` running on the current event loop, as
    a SIGINT would, and make streams that start later end at once.

    Each stream gets its ``shutdown_grace_period`` and then ends with a clean end of the body
    (see ``EventSourceResponse``). Call it from the event loop's thread, for example from a
    server's shutdown hook when signals do not reach the process that runs the app.
    """
    _registry().trigger()


async def drain_streams(timeout: float = 5.0) -> bool:  # noqa: ASYNC109 - shielded
    """End every stream of the current event loop (as :func:`shutdown_streams`) and wait until
    they have ended, for at most ``timeout`` seconds (shielded from cancellation).

    Call it at the end of your app's lifespan (after its ``yield``). Some servers (granian)
    stop running the event loop once the lifespan's shutdown is done, and then wait forever
    for a stream that was still sending its end; the hub's own lifespan does this already.

    Args:
        timeout: the most seconds to wait; each stream needs its ``shutdown_grace_period`` and
            up to ``SHUTDOWN_SEND_TIMEOUT`` (1 s) for its last send.

    Returns:
        Whether every stream had ended in time.
    """
    registry = _registry()
    registry.trigger()
    if registry.streams:
        # One event for every concurrent drain; the last stream to end sets and forgets it.
        if registry.ended is None:
            registry.ended = anyio.Event()
        await wait_shielded(registry.ended, timeout)
    return not registry.streams


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # A signal handler runs between two bytecodes of the main thread, in the middle of whatever
    # the loop does: each loop's trigger is scheduled, thread-safely, on that loop.
    for native, registry in list(_registries.items()):
        run = getattr(native, "call_soon_threadsafe", None) or native.run_sync_soon
        try:
            run(registry.trigger)
        except RuntimeError:  # the loop closed meanwhile
            continue
    previous = _previous.get(signum)
    if previous is not None:
        previous(signum, frame)
    elif signum == signal.SIGINT:
        # Never swallow Ctrl-C, whatever another library did to the handlers meanwhile.
        signal.default_int_handler(signum, frame)


def _unchain_signals() -> None:
    for signum, previous in list(_previous.items()):
        # Only where ours is still installed. Where another handler replaced it, the entry
        # stays: that handler may have saved ours and put it back later (uvicorn does), and
        # ours must then still call the handler it replaced.
        if signal.getsignal(signum) is _on_signal:
            try:
                signal.signal(signum, previous)
            except (ValueError, OSError):  # pragma: no cover - not the main thread after all
                return
            del _previous[signum]


def _chain_signals() -> None:
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is _on_signal or not callable(current):
            continue
        _previous[signum] = current
        try:
            signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # pragma: no cover - not the main thread after all
            return
        logger.debug("streams end cleanly on signal %s", signal.Signals(signum).name)
