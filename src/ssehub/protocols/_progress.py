"""Task progress: track long tasks and stream their lifecycle to any number of subscribers.

A task goes ``pending`` -> ``running`` (percent and message, any number of times) -> ``completed``
or ``failed`` (with the error). Progress is *state*, not a log: subscribers are conflated, so a
slow subscriber skips intermediate ``running`` updates but always sees each task's latest state
and its final one. That bounds memory by the number of tasks, never by the number of updates, and
needs no per-subscriber queue. A late or reconnecting subscriber gets the current state of every
task it follows first, then live updates.

Every change gets a board-wide sequence number, used as the SSE event id. All methods must be
called from the event loop's thread (from a worker thread, use ``anyio.from_thread.run_sync``).
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from .._exceptions import ProtocolError, SchemaValidationError
from ..wire import ServerSentEvent
from ._schema import EventProtocol

__all__ = [
    "TASK_PROGRESS",
    "TASK_PROTOCOL",
    "ProgressBoard",
    "ProgressReporter",
    "ProgressSubscription",
    "TaskProgress",
    "TaskState",
]


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
        if not (math.isfinite(percent) and 0 <= percent <= 100):
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
            forgotten first (bounded memory for long-running servers).
    """

    def __init__(self, *, keep_finished: int = 1000) -> None:
        self.keep_finished = keep_finished
        self._states: dict[str, TaskProgress] = {}
        self._seq = 0
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
        return sorted(self._states.values(), key=lambda s: s.seq)

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

    def subscribe(self, task_id: str | None = None) -> ProgressSubscription:
        """Follow one task (ends after its final state) or all tasks (ends when closed).

        The first items are the current states, so a late subscriber starts from the present.

        Raises:
            KeyError: ``task_id`` is unknown.
        """
        if task_id is not None:
            self.get(task_id)
        return ProgressSubscription(self, task_id)

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
        if progress.state.terminal:
            self._forget_old()
        self._wake()
        return progress

    def _forget_old(self) -> None:
        finished = [s for s in self.tasks() if s.state.terminal]
        for old in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._states[old.task_id]

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
    """

    def __init__(self, board: ProgressBoard, task_id: str | None) -> None:
        self._board = board
        self._task_id = task_id
        self._cursor = 0
        self._ended = False

    def _next(self) -> TaskProgress | None:
        if self._task_id is not None:
            state = self._board._states.get(self._task_id)
            return state if state is not None and state.seq > self._cursor else None
        newer = [s for s in self._board._states.values() if s.seq > self._cursor]
        return min(newer, key=lambda s: s.seq) if newer else None

    async def receive(self) -> TaskProgress:
        """Return the next state change (oldest first), waiting for one if needed.

        Raises:
            anyio.EndOfStream: the followed task has ended and was delivered, or the board is
                closed and everything current was delivered.
        """
        while True:
            if self._ended:
                raise anyio.EndOfStream
            state = self._next()
            if state is not None:
                self._cursor = state.seq
                if self._task_id is not None and state.state.terminal:
                    self._ended = True
                return state
            if self._board._closed or (
                self._task_id is not None and self._task_id not in self._board._states
            ):
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
