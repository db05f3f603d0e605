"""Errors leave the channel context managers as themselves, not wrapped in an ExceptionGroup."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from ssehub.channels import Channel, ChannelRegistry, Message, WorkerPool

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio

MANAGERS: dict[str, Callable[[], AbstractAsyncContextManager[Any]]] = {
    "channel": lambda: Channel("c"),
    "registry": ChannelRegistry,
    "worker pool": WorkerPool,
}


@pytest.mark.parametrize("make", MANAGERS.values(), ids=MANAGERS.keys())
async def test_error_in_the_block_comes_out_as_itself(
    make: Callable[[], AbstractAsyncContextManager[Any]],
) -> None:
    with pytest.raises(ValueError, match="boom") as info:
        async with make():
            raise ValueError("boom")
    assert not isinstance(info.value, BaseExceptionGroup)


async def fail_while_running() -> None:
    called = anyio.Event()

    def callback(message: Message) -> None:
        anyio.from_thread.run_sync(called.set)

    async with ChannelRegistry() as registry, WorkerPool() as pool:
        channel = await registry.create("jobs")
        pool.attach(channel, callback, ordered=True)
        await channel.broadcast(Message("job", 1))
        with anyio.fail_after(5):
            await called.wait()
        raise ValueError("boom")


async def test_error_with_channels_and_callbacks_running_comes_out_as_itself() -> None:
    with pytest.raises(ValueError, match="boom"):
        await fail_while_running()
