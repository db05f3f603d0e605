"""Errors leave ``async with Broker()`` as themselves, not wrapped in an ExceptionGroup."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from ssehub import SlowConsumer
from ssehub.backends.memory import MemoryBackend
from ssehub.broker import Broker

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

pytestmark = pytest.mark.anyio


class FailingBackend(MemoryBackend):
    """A memory backend whose background task raises ``RuntimeError`` once ``fail`` is set."""

    def __init__(self, *, fail_on_start: bool = False) -> None:
        super().__init__()
        self.fail = anyio.Event()
        self.failed = anyio.Event()
        self.fail_on_start = fail_on_start

    async def start(self, *, task_group: TaskGroup, **kwargs: Any) -> None:
        await super().start(task_group=task_group, **kwargs)
        if self.fail_on_start:
            raise ValueError("cannot start")
        task_group.start_soon(self._fail_later)

    async def _fail_later(self) -> None:
        await self.fail.wait()
        self.failed.set()
        raise RuntimeError("backend task failed")


def fail_with_cause(cause: BaseException) -> None:
    raise ValueError("boom") from cause


async def broker_block_raising(cause: BaseException) -> None:
    async with Broker():
        fail_with_cause(cause)


async def test_error_in_the_block_comes_out_as_itself_with_cause_and_traceback() -> None:
    cause = KeyError("why")
    with pytest.raises(ValueError, match="boom") as info:
        await broker_block_raising(cause)
    assert not isinstance(info.value, BaseExceptionGroup)
    assert info.value.__cause__ is cause
    assert info.traceback[-1].name == "fail_with_cause"  # the traceback still reaches the raise


async def shed_subscriber() -> None:
    async with Broker(queue_size=1, overflow="disconnect") as broker:
        subscription = broker.subscribe("t")
        await broker.publish("t", "a")
        await broker.publish("t", "b")  # the queue is full: the subscription is shed
        with anyio.fail_after(5):
            async for _ in subscription:
                pass  # pragma: no cover - shed before the first item


async def test_slow_consumer_comes_out_as_itself() -> None:
    with pytest.raises(SlowConsumer):
        await shed_subscriber()


async def background_failure(backend: FailingBackend) -> None:
    async with Broker(backend):
        backend.fail.set()
        with anyio.fail_after(5):
            await anyio.sleep_forever()  # cancelled by the failing task


async def test_lone_background_error_comes_out_as_itself() -> None:
    with pytest.raises(RuntimeError, match="backend task failed"):
        await background_failure(FailingBackend())


async def two_failures(backend: FailingBackend) -> None:
    async with Broker(backend):
        backend.fail.set()
        with anyio.fail_after(5), anyio.CancelScope(shield=True):
            await backend.failed.wait()
        # The background task has failed (it raised right after setting `failed`); with no
        # checkpoint since, the block fails too: two errors, one group.
        raise ValueError("boom")


async def test_two_errors_stay_a_group() -> None:
    with pytest.raises(ExceptionGroup) as info:
        await two_failures(FailingBackend())
    leaves = sorted(type(error).__name__ for error in _leaves(info.value))
    assert leaves == ["RuntimeError", "ValueError"]


async def enter(broker: Broker) -> None:
    async with broker:
        pass  # pragma: no cover - the start fails


async def test_start_failure_comes_out_as_itself_and_closes_the_broker() -> None:
    broker = Broker(FailingBackend(fail_on_start=True))
    with pytest.raises(ValueError, match="cannot start"):
        await enter(broker)
    assert not broker.running


async def test_cancellation_is_not_an_error() -> None:
    with anyio.CancelScope() as scope:
        async with Broker():
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for error in group.exceptions:
        out.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return out
