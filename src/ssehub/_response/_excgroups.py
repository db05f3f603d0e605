"""Unwrapping anyio's single-exception groups for callers that expect the bare exception."""

from __future__ import annotations

import sys
from collections.abc import Generator
from contextlib import contextmanager

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["collapse_excgroups", "single_exception"]


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
