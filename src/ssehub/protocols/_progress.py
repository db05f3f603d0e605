"""Task progress: track long tasks and stream their lifecycle to any number of subscribers.

A task goes ``pending`` -> ``running`` (percent and message, any number of times) -> ``completed``
or ``failed`` (with the error). Progress is *state*, not a log: subscribers are conflated, so a
slow subscriber skips intermediate ``running`` updates but always sees each task's latest state
and its final one. That bounds memory by the number of tasks, never by the number of updates, and
needs no per-subscriber queue. A late or reconnecting subscriber gets the current state of every
task it follows first, then live updates.

An ended task is forgotten (beyond ``keep_finished``) only once every live subscription that
follows it has received its final state, so no subscriber misses a ``completed`` or ``failed``.
A subscription that falls more than ``max_unread`` ended tasks behind is cut off with
:class:`ProgressOverrun` instead of holding memory without bound.

Every change gets a board-wide sequence number, used as the SSE event id. All methods must be
called from the event loop's thread (from a worker thread, use ``anyio.from_thread.run_sync``).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio

from .._exceptions import ConfigurationError, ProtocolError, SchemaValidationError
from ..wire import ServerSentEvent
from ._schema import EventProtocol

__all__ = [
    "TASK_PROGRESS",
    "TASK_PROTOCOL",
    "ProgressBoard",
    "ProgressOverrun",
    "ProgressReporter",
    "ProgressSubscription",
    "TaskProgress",
    "TaskState",
]

_LOG_SLACK: Final = 64  # superseded entries tolerated beyond the tasks known before compacting


class ProgressOverrun(ProtocolError):
    """A subscription fell so far behind that the board could not keep, for it, the final states
    it had not received yet (more than the board's ``max_unread`` ended tasks).

    Nothing was skipped silently: the subscription ends with this error instead. Subscribe
    again to start from the current states.
    """


class TaskState(str, enum.Enum):
    """The lifecycle states of a task."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """Whether the task has ended."""
        return self in (TaskState.COMPLETED, TaskState.FAILED)


@dataclass(frozen=True)
class TaskProgress:
    """The state of one task at one point.

    Attributes:
        task_id: the task's id.
        state: its lifecycle state.
        percent: completion in percent (0-100), when known.
        message: a human-readable status line.
        error: the error text of a failed task.
        seq: the board-wide sequence number of this state (the SSE event id).
    """

    task_id: str
    state: TaskState
    percent: float | None = None
    message: str = ""
    error: str | None = None
    seq: int = 0


TASK_PROTOCOL = EventProtocol(
    "tasks", ["1"], features=["batching"], description="task progress (ssehub)"
)
"""A ready-made protocol with one kind, ``task.progress`` (batchable)."""

TASK_PROGRESS = TASK_PROTOCOL.kind("task.progress", TaskProgress, batchable=True)
"""The ``task.progress`` kind; its payload is a :class:`TaskProgress`."""


class ProgressReporter:
    """The handle a task uses to report its progress. Created by :meth:`ProgressBoard.create`."""

    __slots__ = ("_board", "task_id")

    def __init__(self, board: ProgressBoard, task_id: str) -> None:
        self._board = board
        self.task_id = task_id

    @property
    def state(self) -> TaskProgress:
        """The task's current state."""
        return self._board.get(self.task_id)

    def start(self, message: str = "") -> TaskProgress:
        """Mark the task running at 0 %.

        Raises:
            ProtocolError: the task has already ended.
        """
        return self._board._set(self.task_id, TaskState.RUNNING, 0.0, message, None)

    def update(self, percent: float, message: str = "") -> TaskProgress:
        """Report progress (starts the task if it was pending).

        Raises:
            SchemaValidationError: ``percent`` is not a number between 0 and 100.
            ProtocolError: the task has already ended.
        """
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise SchemaValidationError(TASK_PROGRESS.name, "percent must be a number")
        if not 0 <= percent <= 100:  # False for NaN too; no float() of a huge int
            raise SchemaValidationError(TASK_PROGRESS.name, "percent must be within 0..100")
        return self._board._set(self.task_id, TaskState.RUNNING, float(percent), message, None)

    def complete(self, message: str = "") -> TaskProgress:
        """Mark the task completed at 100 %.

        Raises:
            ProtocolError: the task has already ended.
        """
        return self._board._set(self.task_id, TaskState.COMPLETED, 100.0, message, None)

    def fail(self, error: str, message: str = "") -> TaskProgress:
        """Mark the task failed with ``error``; its percent stays where it was.

        Raises:
            ProtocolError: the task has already ended.
        """
        percent = self._board.get(self.task_id).percent
        return self._board._set(self.task_id, TaskState.FAILED, percent, message, error)


class ProgressBoard:
    """The current state of many tasks, with conflating subscriptions.

    Args:
        keep_finished: how many ended tasks to keep for late subscribers; older ones are
            forgotten first (bounded memory for long-running servers), but never before every
            live subscription following them has received their final state.
        max_unread: how many more ended tasks the board keeps for subscriptions that have not
            received their final state yet. A subscription that would need more is cut off
            (its ``receive()`` raises :class:`ProgressOverrun`), slowest first.

    Raises:
        ConfigurationError: a bound is negative.

    Memory: at most ``keep_finished + max_unread`` ended tasks plus the tasks still running,
    whatever the number of updates or subscribers; a subscription itself holds one cursor.
    """

    def __init__(self, *, keep_finished: int = 1000, max_unread: int = 1000) -> None:
        if keep_finished < 0 or max_unread < 0:
            raise ConfigurationError("keep_finished and max_unread must not be negative")
        self.keep_finished = keep_finished
        self.max_unread = max_unread
        self._states: dict[str, TaskProgress] = {}
        # Every state published, in sequence order, superseded ones included until the next
        # compaction: an all-task subscription finds the next state after its cursor by
        # bisection, not by a scan of every task (that made a catch-up quadratic).
        self._log: list[TaskProgress] = []
        # Ended tasks in the order they ended (a final state is a task's last change, so this
        # is also sequence order): the oldest are the ones to forget first.
        self._finished: dict[str, TaskProgress] = {}
        # Live subscriptions, weakly: one dropped without being drained (a client that went
        # away) stops holding ended tasks for itself once it is garbage.
        self._subs: weakref.WeakSet[ProgressSubscription] = weakref.WeakSet()
        self._seq = 0
        self._forgotten = 0  # the newest sequence number of a final state forgotten
        self._changed: anyio.Event | None = None
        self._closed = False

    def create(self, task_id: str | None = None, message: str = "") -> ProgressReporter:
        """Register a pending task and return its reporter.

        Args:
            task_id: the id (default: a random UUID hex).
            message: the initial status line.

        Raises:
            ProtocolError: the id is already in use, or the board is closed.
        """
        task_id = task_id or uuid.uuid4().hex
        if self._closed:
            raise ProtocolError("the progress board is closed")
        if task_id in self._states:
            raise ProtocolError(f"task {task_id!r} already exists")
        self._publish(TaskProgress(task_id, TaskState.PENDING, None, message))
        return ProgressReporter(self, task_id)

    def get(self, task_id: str) -> TaskProgress:
        """The current state of ``task_id``.

        Raises:
            KeyError: no such task (never created, or forgotten).
        """
        return self._states[task_id]

    def tasks(self) -> list[TaskProgress]:
        """The current state of every known task, oldest change first."""
        return sorted(self._states.values(), key=_seq)

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest change (0 before any)."""
        return self._seq

    async def run(
        self,
        job: Callable[[ProgressReporter], Awaitable[Any]],
        *,
        task_id: str | None = None,
        reporter: ProgressReporter | None = None,
    ) -> TaskProgress:
        """Run ``job`` as a tracked task: running, then completed or failed.

        An exception from the job marks the task failed and is *not* re-raised, so one failing
        job cannot take down the task group that runs it. Cancellation marks it failed with
        ``"cancelled"`` and propagates.

        Args:
            job: an async callable receiving the task's :class:`ProgressReporter`.
            task_id: the id of a new task (ignored when ``reporter`` is given).
            reporter: an existing pending task's reporter (from :meth:`create`).

        Returns:
            The task's final state.
        """
        reporter = reporter or self.create(task_id)
        reporter.start()
        try:
            await job(reporter)
        except anyio.get_cancelled_exc_class():
            if not reporter.state.state.terminal:
                reporter.fail("cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - the failure is the task's reported outcome
            if not reporter.state.state.terminal:
                reporter.fail(f"{type(exc).__name__}: {exc}")
        else:
            if not reporter.state.state.terminal:
                reporter.complete()
        return reporter.state

    def subscribe(self, task_id: str | None = None, *, after: int = 0) -> ProgressSubscription:
        """Follow one task (ends after its final state) or all tasks (ends when closed).

        The first items are the current states, so a late subscriber starts from the present.

        Args:
            task_id: the task to follow; ``None`` follows every task.
            after: resume after this sequence number (a reconnecting client's
                ``Last-Event-ID``): states the client already has (``seq <= after``) are not
                sent again, even from the middle of a batch. States are conflated, so every
                task that changed since comes with its latest state, nothing in between. An
                ``after`` beyond the latest change cannot come from this board (an id from
                before a restart, say) and starts from the current states instead. So does
                an ``after`` older than a final state the board has since forgotten (a client
                away while more than ``keep_finished`` tasks ended): the subscription's
                :attr:`~ProgressSubscription.missed` is then true, since the client may never
                learn how some task it saw ended; every current state comes again, so it can
                drop the tasks it knows that are not among them.

        Raises:
            KeyError: ``task_id`` is unknown.
        """
        if task_id is not None:
            self.get(task_id)
        if not 0 <= after <= self._seq:
            after = 0
        missed = task_id is None and 0 < after < self._forgotten
        subscription = ProgressSubscription(self, task_id, 0 if missed else after)
        subscription.missed = missed
        self._subs.add(subscription)
        return subscription

    def close(self) -> None:
        """End every subscription once it has delivered the current states.

        No task can be created afterwards; existing tasks may still record their final state.
        """
        self._closed = True
        self._wake()

    def _set(
        self,
        task_id: str,
        state: TaskState,
        percent: float | None,
        message: str,
        error: str | None,
    ) -> TaskProgress:
        current = self.get(task_id)
        if current.state.terminal:
            raise ProtocolError(f"task {task_id!r} has already {current.state.value}")
        return self._publish(
            replace(current, state=state, percent=percent, message=message, error=error)
        )

    def _publish(self, progress: TaskProgress) -> TaskProgress:
        # Changes stay allowed after close(): jobs cancelled during shutdown still record
        # their failure for anyone reading the board.
        self._seq += 1
        progress = replace(progress, seq=self._seq)
        self._states[progress.task_id] = progress
        log = self._log
        log.append(progress)
        if len(log) > 2 * len(self._states) + _LOG_SLACK:
            # Superseded and forgotten states go: the log stays within twice the tasks known.
            states = self._states
            self._log = [state for state in log if states.get(state.task_id) is state]
        if progress.state.terminal:
            self._finished[progress.task_id] = progress
            self._forget_old()
        self._wake()
        return progress

    def _forget_old(self) -> None:
        """Forget the ended tasks beyond ``keep_finished`` that no live subscription still owes
        its final state; cut off the slowest subscriptions beyond ``max_unread``.

        Cost: one pass over the live subscriptions and the excess ended tasks (at most
        ``max_unread + 1`` of them), only when there is an excess at all.
        """
        overrun = False
        while len(self._finished) > self.keep_finished:
            excess = len(self._finished) - self.keep_finished
            subs = list(self._subs)
            # All-task subscriptions deliver in sequence order: the slowest cursor tells
            # which final states one of them still has to deliver.
            floor = min((sub._cursor for sub in subs if sub._task_id is None), default=None)
            # Single-task subscriptions: the slowest cursor per followed task.
            followed: dict[str, int] = {}
            for sub in subs:
                if sub._task_id is not None:
                    followed[sub._task_id] = min(
                        followed.get(sub._task_id, sub._cursor), sub._cursor
                    )
            pinned: list[TaskProgress] = []
            for state in list(itertools.islice(self._finished.values(), excess)):
                single = followed.get(state.task_id)
                if (floor is not None and floor < state.seq) or (
                    single is not None and single < state.seq
                ):
                    pinned.append(state)
                else:
                    del self._finished[state.task_id]
                    del self._states[state.task_id]
                    self._forgotten = max(self._forgotten, state.seq)
            if len(pinned) <= self.max_unread:
                break
            # Too many final states held for laggards: cut off the ones that owe the oldest,
            # then look again (that task is now free, and maybe more behind it).
            oldest = pinned[0]
            for sub in subs:
                if sub._owes(oldest):
                    sub._overrun = True
                    self._subs.discard(sub)
                    overrun = True
        if overrun:
            self._wake()

    def _release(self, subscription: ProgressSubscription) -> None:
        """A subscription ended or was closed: it holds no ended task any more."""
        self._subs.discard(subscription)
        if len(self._finished) > self.keep_finished:
            self._forget_old()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()


class ProgressSubscription:
    """Conflated, cancellation-safe stream of :class:`TaskProgress` from a board.

    ``receive()`` reads the board only after waking, so cancelling it never loses an update;
    it can therefore be raced against a deadline (see :func:`ssehub.protocols.batched`).

    While it is live (not ended, closed or garbage), the board keeps every ended task it follows
    until it has received the task's final state. Call :meth:`close` when stopping early, or
    just drop it: either way it stops holding tasks.

    Attributes:
        missed: the ``after`` it was made with is older than a final state the board has
            forgotten, so it starts from every current state instead (see
            :meth:`ProgressBoard.subscribe`); tell the client to start over.
    """

    def __init__(self, board: ProgressBoard, task_id: str | None, after: int = 0) -> None:
        self._board = board
        self._task_id = task_id
        self._cursor = after  # the seq of the last state delivered (or already held)
        self._ended = False
        self._overrun = False
        self.missed = False

    def _owes(self, state: TaskProgress) -> bool:
        """Whether this subscription has yet to deliver ``state`` (an ended task's final state)."""
        if self._task_id is None:
            return self._cursor < state.seq
        return self._task_id == state.task_id and self._cursor < state.seq

    def close(self) -> None:
        """Stop following: ``receive()`` then raises :class:`anyio.EndOfStream`."""
        if not self._ended:
            self._ended = True
            self._board._release(self)

    def _next(self) -> TaskProgress | None:
        if self._task_id is not None:
            state = self._board._states.get(self._task_id)
            return state if state is not None and state.seq > self._cursor else None
        board = self._board
        log, states = board._log, board._states
        index = bisect.bisect_right(log, self._cursor, key=_seq)
        # Entries a later change superseded (or forgetting removed) are skipped.
        while index < len(log):
            state = log[index]
            if states.get(state.task_id) is state:
                return state
            index += 1
        return None

    async def receive(self) -> TaskProgress:
        """Return the next state change (oldest first), waiting for one if needed.

        Raises:
            anyio.EndOfStream: the followed task has ended and was delivered, or the board is
                closed and everything current was delivered, or :meth:`close` was called.
            ProgressOverrun: the subscription fell more than the board's ``max_unread`` ended
                tasks behind and was cut off (see :class:`ProgressBoard`); raised again on every
                later call.
        """
        while True:
            if self._overrun:  # checked first: a cut-off stream stays broken, it never "ends"
                raise ProgressOverrun(
                    "the progress subscription fell too far behind (more than "
                    f"{self._board.max_unread} ended tasks unread); subscribe again"
                )
            if self._ended:
                raise anyio.EndOfStream
            state = self._next()
            if state is not None:
                self._cursor = state.seq
                if self._task_id is not None and state.state.terminal:
                    self.close()  # delivered its final state: the task is free to go
                elif (
                    state.state.terminal and len(self._board._finished) > self._board.keep_finished
                ):
                    # This may have been the last subscription owing the state.
                    self._board._forget_old()
                return state
            if self._task_id is not None:
                # Nothing newer for the followed task: if it has ended, this subscriber already
                # has its final state (it resumed after it), so there is nothing to wait for.
                current = self._board._states.get(self._task_id)
                if current is None or current.state.terminal:
                    self.close()
                    raise anyio.EndOfStream
            if self._board._closed:
                self.close()
                raise anyio.EndOfStream
            await self._board._wait_changed()

    def __aiter__(self) -> AsyncIterator[TaskProgress]:
        return self

    async def __anext__(self) -> TaskProgress:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    @staticmethod
    def encode(progress: TaskProgress) -> ServerSentEvent:
        """Encode a state as a ``task.progress`` event whose id is its sequence number."""
        return TASK_PROGRESS.encode(progress, id=progress.seq)


def _seq(state: TaskProgress) -> int:
    return state.seq
