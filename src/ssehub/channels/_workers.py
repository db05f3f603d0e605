"""Callback listeners: a callable invoked for every message, in a bounded thread or process pool.

``async with WorkerPool(max_workers=4) as pool:`` owns one task group; :meth:`WorkerPool.attach`
registers a listener on a channel and starts one consumer task for it. The consumer reads the
listener's messages and runs ``callback(message)`` in a worker thread (or, with
``processes=True``, a worker process for CPU-bound work), never more than ``max_workers`` at
once across the pool.

* ``ordered=True``: one message at a time per listener, in order.
* ``ordered=False``: up to ``max_workers`` messages of the listener in flight at once.

Nothing grows without limit: a consumer takes new messages only when a worker slot is free, so
when the pool is saturated messages wait in the listener's bounded queue, whose overflow policy
applies (choose the channel's ``overflow="block"`` for back-pressure on senders). An exception
in a callback (``sys.exit()`` included) is logged and counted; the listener and the channel
carry on.

In a process pool, what a callback logs goes to the parent's loggers and what it prints to the
parent's standard output and error, once the call returns (see ``_worker_output.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import anyio.to_process
import anyio.to_thread

from .._exceptions import BrokerClosed, ConfigurationError, UnknownListener
from ..broker.broker import Broker
from ._message import Message
from ._worker_output import log_threshold, run_captured

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._channel import Channel
    from ._listener import Listener, MessageHook

__all__ = ["DEFAULT_MAX_WORKERS", "CallbackListener", "WorkerPool", "WorkerStatistics"]

logger = logging.getLogger("ssehub.channels")

DEFAULT_MAX_WORKERS: Final = 4
"""Concurrent callbacks per pool: a small multiple of the cores a hub process usually has."""

Callback = Callable[[Message], Any]


class WorkerStatistics(NamedTuple):
    """Counters of a callback listener (or, summed, of a pool).

    Attributes:
        processed: callbacks that returned normally.
        failed: callbacks that raised (logged with their traceback).
        dropped: messages lost before reaching the callback (``drop_oldest`` notices, resets).
        in_flight: callbacks running or waiting for a worker now.
    """

    processed: int
    failed: int
    dropped: int
    in_flight: int


class CallbackListener:
    """The handle of a listener whose messages go to a callback; made by :meth:`WorkerPool.attach`.

    Attributes:
        listener: the channel listener (stop it, or dispatch the end-of-stream message, to end
            it after what is queued).
        callback: the callable.
        ordered: whether its messages are processed one at a time, in order.
    """

    def __init__(self, listener: Listener, callback: Callback, *, ordered: bool) -> None:
        self.listener = listener
        self.callback = callback
        self.ordered = ordered
        self._processed = 0
        self._failed = 0
        self._dropped = 0
        self._in_flight = 0
        self._done = anyio.Event()

    def __repr__(self) -> str:
        return f"<CallbackListener {self.listener.id!r} ordered={self.ordered}>"

    def statistics(self) -> WorkerStatistics:
        """Return ``(processed, failed, dropped, in_flight)``."""
        return WorkerStatistics(self._processed, self._failed, self._dropped, self._in_flight)

    @property
    def done(self) -> bool:
        """Whether its stream ended and every callback of it has returned."""
        return self._done.is_set()

    async def wait(self) -> None:
        """Wait until its stream ended (stopped, removed, channel closed) and callbacks returned."""
        await self._done.wait()


class WorkerPool:
    """Runs callback listeners in a bounded pool of threads or processes.

    Args:
        max_workers: callbacks running at once across the pool (>= 1).
        processes: run callbacks in worker processes (CPU-bound work); the callback must then
            be picklable (a module-level function) and receives a pickled :class:`Message`.
            What it logs is handed to this process's loggers (their levels and handlers
            apply; records keep the worker's ``process`` id) and what it prints is written to
            this process's standard output and error, when the call returns, bounded per call
            (1000 records, 64 KiB per stream). A failing callback's log carries the worker's
            traceback as a note (Python 3.11+).

    Raises:
        ConfigurationError: ``max_workers`` is not a positive int.
    """

    def __init__(self, *, max_workers: int = DEFAULT_MAX_WORKERS, processes: bool = False) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError("max_workers must be an int >= 1")
        self.max_workers = max_workers
        self.processes = processes
        self._limiter = anyio.CapacityLimiter(max_workers)
        self._task_group: TaskGroup | None = None
        # The running handles only: an ended one is folded into the totals and forgotten,
        # so a long-lived pool attaching short-lived listeners does not grow.
        self._listeners: dict[CallbackListener, None] = {}
        self._ended = (0, 0, 0)  # processed, failed, dropped of the handles that ended

    async def __aenter__(self) -> WorkerPool:
        if self._task_group is not None:
            raise BrokerClosed("a WorkerPool can be entered only once at a time")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Cancel the consumers (running callbacks are waited for) and remove their listeners."""
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        task_group.cancel_scope.cancel()
        # A lone error of the block comes out as itself, not in a group.
        return await Broker._exit_task_group(task_group, exc_type, exc, tb)

    def statistics(self) -> WorkerStatistics:
        """Return the sums over every callback listener attached so far (ended ones too)."""
        totals = [*self._ended, 0]
        for handle in self._listeners:
            for index, value in enumerate(handle.statistics()):
                totals[index] += value
        return WorkerStatistics(*totals)

    def attach(
        self,
        channel: Channel,
        callback: Callback,
        *,
        ordered: bool,
        id: str | None = None,
        on_message: MessageHook | None = None,
    ) -> CallbackListener:
        """Register a listener on ``channel`` whose messages are passed to ``callback``.

        Args:
            channel: a running channel.
            callback: called as ``callback(message)`` in a worker; its result is ignored.
            ordered: ``True``: one message at a time, in order; ``False``: up to
                ``max_workers`` of this listener's messages at once, in any order. Required.
            id: the listener id (random by default).
            on_message: the listener's validation hook (runs in the sender, see ``Listener``).

        Returns:
            The handle. The listener is removed from the channel when its stream ends or the
            pool exits.

        Raises:
            BrokerClosed: the pool or the channel is not running.
            AlreadyExists: the id is taken.
        """
        task_group = self._task_group
        if task_group is None:
            raise BrokerClosed("the worker pool is not running (use `async with`)")
        listener = channel.add_listener(id, on_message=on_message)
        handle = CallbackListener(listener, callback, ordered=ordered)
        self._listeners[handle] = None
        task_group.start_soon(self._consume, channel, handle, name=f"ssehub worker {listener.id}")
        return handle

    async def _consume(self, channel: Channel, handle: CallbackListener) -> None:
        try:
            try:
                stream = channel.message_stream(handle.listener, remove_on_close=True)
            except (UnknownListener, BrokerClosed):
                # Removed (or its channel closed) before this task ran: it ended, and must
                # not take the pool and every other listener's consumer down with it.
                logger.debug("callback listener %r ended before it started", handle.listener.id)
                return
            async with stream:
                if handle.ordered:
                    async for message in stream:
                        if self._accept(handle, message):
                            handle._in_flight += 1
                            await self._call(handle, message)
                else:
                    # Per listener, at most max_workers callbacks in flight: the consumer stops
                    # reading (and the listener's queue applies its policy) until one finishes.
                    # A slot is taken before the next message is read, so a saturated
                    # listener leaves its messages in its queue, where the policy applies.
                    slots = anyio.Semaphore(self.max_workers)
                    async with anyio.create_task_group() as calls:
                        while True:
                            await slots.acquire()
                            try:
                                message = await stream.__anext__()
                            except StopAsyncIteration:
                                slots.release()
                                break
                            if self._accept(handle, message):
                                handle._in_flight += 1
                                calls.start_soon(self._call, handle, message, slots)
                            else:
                                slots.release()
        finally:
            del self._listeners[handle]
            processed, failed, dropped, _ = handle.statistics()
            done, errors, lost = self._ended
            self._ended = (done + processed, errors + failed, lost + dropped)
            handle._done.set()

    @staticmethod
    def _accept(handle: CallbackListener, message: Message) -> bool:
        kind = message.type
        if kind == "ssehub.dropped":
            handle._dropped += int(message.payload["dropped"])
            logger.warning("callback listener %r lost messages: %r", handle.listener.id, message)
            return False
        if kind == "ssehub.reset":
            handle._dropped += 1  # an unknown number: at least one message is missing
            logger.warning("callback listener %r could not resume: %r", handle.listener.id, message)
            return False
        return not message.is_end

    async def _call_in_process(self, handle: CallbackListener, message: Message) -> None:
        outcome = await anyio.to_process.run_sync(
            run_captured, handle.callback, message, log_threshold(), limiter=self._limiter
        )
        outcome.replay(handle.listener.id)
        if outcome.error is not None:
            raise outcome.error

    async def _call(
        self, handle: CallbackListener, message: Message, slots: anyio.Semaphore | None = None
    ) -> None:
        try:
            if self.processes:
                await self._call_in_process(handle, message)
            else:
                await anyio.to_thread.run_sync(handle.callback, message, limiter=self._limiter)
        except (Exception, SystemExit):
            # User code: log it, count it, keep the listener and the channel running (a
            # sys.exit() in a callback too: it would otherwise end the pool and the process).
            handle._failed += 1
            logger.exception(
                "callback of listener %r failed on message %r", handle.listener.id, message.id
            )
        else:
            handle._processed += 1
        finally:
            handle._in_flight -= 1
            if slots is not None:
                slots.release()
