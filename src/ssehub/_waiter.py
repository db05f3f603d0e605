"""The one-shot wake-up a subscription's consumer waits on.

On asyncio an ``anyio.Event`` is an ``asyncio.Event`` (with its own deque of waiters) behind
a wrapper: about 700 bytes for every waiting subscriber, and a few calls per wake-up. A
consumer waits alone and each waiter is used once, so a bare future does the same job in a
fraction of the memory. On any other backend (trio) the broker keeps ``anyio.Event``.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel

__all__ = ["Waiter", "wait_shielded", "waiter_factory"]


class Waiter(Protocol):
    """What the broker needs of an event: ``set()`` from the loop, ``await wait()`` once."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[None]: ...


class _FutureWaiter:
    """``set``/``wait`` on one asyncio future (cancellable like anyio.Event.wait)."""

    __slots__ = ("_future",)

    def __init__(self, create_future: Callable[[], Any]) -> None:
        self._future = create_future()

    def set(self) -> None:
        # A wait cancelled by its task's cancel scope cancels the future: then there is
        # nothing to wake.
        if not self._future.done():
            self._future.set_result(None)

    def wait(self) -> Awaitable[None]:
        # The future itself, not a coroutine awaiting it: an idle stream waits here for
        # hours, and a coroutine would keep one more suspended frame alive all that time.
        return self._future  # type: ignore[no-any-return]


def _future_factory(loop: Any) -> Callable[[], Waiter]:
    # The loop weakly: the factory is the value of a weak dictionary keyed by that loop, and a
    # strong reference would keep both alive for ever. A reference, not a proxy:
    # gc.get_objects() users call isinstance() on everything, which raises on a dead proxy.
    loop_ref = weakref.ref(loop)

    def new_waiter() -> Waiter:
        loop = loop_ref()
        if loop is None:
            raise RuntimeError("the event loop of this waiter factory is gone")
        return _FutureWaiter(loop.create_future)

    return new_waiter


# One factory per event loop, shared by every stream on it (freed with the loop).
_factories: weakref.WeakKeyDictionary[Any, Callable[[], Waiter]] = weakref.WeakKeyDictionary()


def waiter_factory(token: anyio.lowlevel.EventLoopToken) -> Callable[[], Waiter]:
    """Return a factory of waiters for the event loop of ``token`` (the running one)."""
    import asyncio  # noqa: TID251 - asyncio's own future, only when asyncio runs

    loop = token.native_token
    if isinstance(loop, asyncio.AbstractEventLoop):
        factory = _factories.get(loop)
        if factory is None:
            factory = _factories[loop] = _future_factory(loop)
        return factory
    # The concrete class of the running backend: anyio.Event() would look the backend up on
    # every call.
    event_class: Callable[[], Waiter] = type(anyio.Event())
    return event_class


async def wait_shielded(event: anyio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until ``event`` is set, shielded from cancellation, for at most ``timeout`` seconds
    (shutdown paths: what they wait for must end even when the caller is being cancelled)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + timeout
        await event.wait()
