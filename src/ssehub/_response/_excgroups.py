"""Unwrapping anyio's single-exception groups for callers that expect the bare exception."""

from __future__ import annotations

import sys
from collections.abc import Generator
from contextlib import contextmanager

if sys.version_info < (3, 11):  # pragma: no cover - anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["collapse_excgroups", "raise_single"]


@contextmanager
def collapse_excgroups() -> Generator[None, None, None]:
    """Re-raise the only exception of a (nested) single-exception group as itself.

    anyio task groups wrap failures in an ExceptionGroup; Starlette middleware (and code written
    for sse-starlette) expects the bare exception, as Starlette's StreamingResponse gives it.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise_single(group)
        raise


def raise_single(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise the only exception of ``group`` (nested single groups unwrapped) as itself, with
    its own cause; return if the group holds several (the caller re-raises the group)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if exc is not group:
        raise exc from exc.__cause__
