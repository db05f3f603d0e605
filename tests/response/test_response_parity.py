"""sse-starlette parity when the client stops reading from the first byte (issue 17 item 7).

sse-starlette starts the content at once, concurrently with sending, and sends from inside the
iteration, so a generator waits at its ``yield`` while a send is stalled. Code written for it
relies on four behaviours, each driven here through the ASGI app with a scripted ``send``
whose body messages stall (a frozen tab, a buffering proxy):

1. a send timeout surfaces as ``SendTimeoutError`` and the generator's ``finally`` runs;
2. a ping that times out while the generator waits for data tears the response down and runs
   the generator's cleanup;
3. after a disconnect during a stalled send, async cleanup in the generator's ``finally`` runs
   to its end within ``cleanup_timeout`` without a warning; with ``cleanup_timeout=0`` the
   synchronous part runs and an awaiting cleanup is cancelled;
4. a ``data_sender_callable`` feeding a memory channel runs from the start, and when the client
   disconnects while it is blocked on a full channel it ends with a cancellation (not
   ``BrokenResourceError``, not an exception group) and the response returns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ssehub import SendTimeoutError
from ssehub.response import EventSourceResponse
from ssehub.testing import http_scope

pytestmark = pytest.mark.anyio


async def stalled_body_send(message: dict[str, Any]) -> None:
    """The client reads nothing: the headers go out, every body message blocks."""
    if message["type"] == "http.response.body":
        await anyio.sleep_forever()


async def never_receive() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError


class Disconnect:
    """A ``receive`` that reports a disconnect once ``go`` is set."""

    def __init__(self) -> None:
        self.go = anyio.Event()

    async def __call__(self) -> dict[str, Any]:
        await self.go.wait()
        return {"type": "http.disconnect"}


async def test_send_timeout_on_a_stalled_first_send_cleans_up_the_generator() -> None:
    produced = anyio.Event()
    cleaned: list[str] = []

    async def gen() -> AsyncIterator[str]:
        try:
            produced.set()
            yield "first"
            await anyio.sleep_forever()
        finally:
            cleaned.append("finally")

    response = EventSourceResponse(gen(), ping=0, send_timeout=0.05)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), never_receive, stalled_body_send)
    assert produced.is_set()  # the content started although no send ever completed
    assert cleaned == ["finally"]


async def test_a_ping_that_times_out_tears_down_the_response_and_runs_cleanup() -> None:
    cleaned: list[str] = []
    opened = anyio.Event()

    async def gen() -> AsyncIterator[str]:
        try:
            await anyio.sleep_forever()  # waiting for data that never comes
            yield "never"
        finally:
            cleaned.append("finally")

    async def frozen_after_open(message: dict[str, Any]) -> None:
        # The opening comment goes out; the client freezes before the first ping.
        if message["type"] == "http.response.body":
            if opened.is_set():
                await anyio.sleep_forever()
            opened.set()

    response = EventSourceResponse(gen(), ping=0.02, send_timeout=0.05)
    with anyio.fail_after(5), pytest.raises(SendTimeoutError):
        await response(http_scope(), never_receive, frozen_after_open)
    assert cleaned == ["finally"]


@pytest.mark.parametrize("cleanup_timeout", [None, 0.5])
async def test_async_cleanup_after_a_disconnect_during_a_stalled_send_runs_to_its_end(
    cleanup_timeout: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    steps: list[str] = []
    disconnect = Disconnect()

    async def gen() -> AsyncIterator[str]:
        try:
            yield "first"
            # Reached only if the generator were pulled on during the stalled send: its
            # cleanup would then be cancelled with it.
            await anyio.sleep_forever()
        finally:
            steps.append("sync part")
            await anyio.sleep(0.01)
            steps.append("async part")

    async def disconnect_once_blocked() -> None:
        await anyio.wait_all_tasks_blocked()
        disconnect.go.set()

    response = EventSourceResponse(gen(), ping=0, cleanup_timeout=cleanup_timeout)
    caplog.set_level(logging.WARNING, "ssehub.response")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(disconnect_once_blocked)
            await response(http_scope(), disconnect, stalled_body_send)
    assert steps == ["sync part", "async part"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_cleanup_timeout_zero_runs_the_sync_part_and_cancels_the_await() -> None:
    steps: list[str] = []
    disconnect = Disconnect()

    async def gen() -> AsyncIterator[str]:
        try:
            yield "first"
            yield "second"
        finally:
            steps.append("sync part")
            await anyio.sleep(0.01)
            steps.append("async part")

    async def disconnect_once_blocked() -> None:
        await anyio.wait_all_tasks_blocked()
        disconnect.go.set()

    response = EventSourceResponse(gen(), ping=0, cleanup_timeout=0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(disconnect_once_blocked)
            await response(http_scope(), disconnect, stalled_body_send)
    assert steps == ["sync part"]


@pytest.mark.parametrize("buffer", [0, 1, 10])
async def test_data_sender_blocked_on_a_full_channel_ends_with_a_cancellation(
    buffer: int,
) -> None:
    send_stream, receive_stream = anyio.create_memory_object_stream[dict[str, Any]](buffer)
    outcome: list[BaseException | str] = []
    disconnect = Disconnect()

    async def producer() -> None:
        try:
            async with send_stream:
                for n in range(10_000):
                    await send_stream.send({"data": str(n)})
            outcome.append("finished")  # pragma: no cover - the client never reads that far
        except BaseException as exc:
            outcome.append(exc)
            raise

    async def disconnect_once_blocked() -> None:
        await anyio.wait_all_tasks_blocked()
        # The producer ran from the start and now waits on the full channel.
        statistics = send_stream.statistics()
        assert statistics.tasks_waiting_send == 1
        assert statistics.current_buffer_used == buffer
        disconnect.go.set()

    response = EventSourceResponse(receive_stream, ping=0, data_sender_callable=producer)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(disconnect_once_blocked)
            await response(http_scope(), disconnect, stalled_body_send)
    assert len(outcome) == 1
    assert isinstance(outcome[0], anyio.get_cancelled_exc_class())
