"""Unwrapping anyio's single-exception groups for callers that expect the bare exception.

anyio wraps even a single error of a task group in an ExceptionGroup, which ``except
ValueError`` around ``async with Broker()`` or a Starlette middleware would miss. Every place
that leaves a task group on behalf of a user (responses, the broker, channels, the health
monitor) goes through here; real multi-error groups stay groups.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["collapse_excgroups", "exit_task_group", "single_exception"]


@contextmanager
def collapse_excgroups() -> Generator[None, None, None]:
    """Re-raise the only exception of a (nested) single-exception group as itself.

    anyio task groups wrap failures in an ExceptionGroup; Starlette middleware (and code written
    for sse-starlette) expects the bare exception, as Starlette's StreamingResponse gives it.
    The exception keeps its own cause and context: it is raised outside the handler.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        failure = single_exception(group)
        if failure is None:
            raise
    else:
        return
    raise failure


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception of ``group`` (nested single groups unwrapped), or ``None`` when it
    holds several (the caller then re-raises the group itself)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if exc is group else exc


async def exit_task_group(
    task_group: TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Leave ``task_group`` (its ``__aexit__``); a lone error comes out as itself.

    The block's own error is re-raised by Python untouched; any other single error is raised
    outside the handler, so its ``__cause__`` and ``__context__`` stay as they were.
    """
    try:
        return await task_group.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while (
            error is not exc
            and isinstance(error, BaseExceptionGroup)
            and len(error.exceptions) == 1
        ):
            error = error.exceptions[0]
        if error is group:
            raise
        if error is exc:
            return False
    raise error
