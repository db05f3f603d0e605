"""Server shutdown without help from the server: ``shutdown_streams()`` and the signal chain.

A shutdown is for the whole event loop (every stream that starts on it afterwards ends at
once), so each test runs in an event loop of its own, never the one the test runner shares.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest

from ssehub import EventSourceResponse, drain_streams, shutdown_streams
from ssehub.testing import stream_asgi

BACKENDS = ["asyncio", "trio"]

OPEN = b": ok\n\n"


async def endless() -> AsyncIterator[str]:
    while True:
        await anyio.sleep(3600)
        yield "never"  # pragma: no cover


def in_own_loop(backend: str, test: Callable[[], Awaitable[None]]) -> None:
    anyio.run(test, backend=backend)


async def _every_open_stream_ends_cleanly() -> None:
    with anyio.fail_after(5):
        async with (
            stream_asgi(EventSourceResponse(endless(), ping=0)) as first,
            stream_asgi(EventSourceResponse(endless(), ping=0, shutdown_grace_period=5)) as slow,
        ):
            assert await first.receive_chunk() == OPEN
            assert await slow.receive_chunk() == OPEN
            shutdown_streams()
            # The generator never ends by itself: the grace period is all it gets, then the
            # body ends cleanly. The first stream has none.
            assert await first.read_all() == b""
            assert first.complete
            with anyio.move_on_after(0.05):
                await slow.read_all()
            assert not slow.complete  # still in its grace period


@pytest.mark.parametrize("backend", BACKENDS)
def test_shutdown_streams_ends_every_open_stream_cleanly(backend: str) -> None:
    in_own_loop(backend, _every_open_stream_ends_cleanly)


async def _a_late_stream_ends_at_once() -> None:
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(endless(), ping=0)) as before:
            assert await before.receive_chunk() == OPEN
            shutdown_streams()
            assert await before.read_all() == b""
        # A client reconnecting while the server shuts down gets headers and a clean end.
        async with stream_asgi(EventSourceResponse(endless(), ping=0)) as late:
            await late.start()
            assert await late.read_all() == OPEN
            assert late.complete


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_that_starts_after_the_shutdown_ends_at_once(backend: str) -> None:
    in_own_loop(backend, _a_late_stream_ends_at_once)


async def test_shutdown_lets_the_generator_say_goodbye_within_the_grace_period(
    anyio_backend: str,
) -> None:
    stop = anyio.Event()

    async def polite() -> AsyncIterator[str]:
        yield "hello"
        with anyio.move_on_after(10):
            await stop.wait()
        yield "goodbye"

    response = EventSourceResponse(polite(), ping=0, shutdown_grace_period=5)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert await stream.receive_chunk() == OPEN
            assert (await stream.events().next_event()).data == "hello"
            response.shutdown()
            stop.set()
            rest = await stream.read_all()
            assert rest == b"data: goodbye\n\n"
            assert stream.complete


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import anyio
    from ssehub import EventSourceResponse
    from ssehub.testing import stream_asgi

    called = []
    signal.signal(signal.SIGTERM, lambda signum, frame: called.append(signum))

    async def endless():
        while True:
            await anyio.sleep(3600)
            yield "never"

    async def main():
        with anyio.fail_after(5):
            async with stream_asgi(EventSourceResponse(endless(), ping=0)) as stream:
                assert await stream.receive_chunk() == b": ok\\n\\n"
                os.kill(os.getpid(), signal.SIGTERM)
                assert await stream.read_all() == b""
                assert stream.complete
        # The server's own handler still ran, once.
        assert called == [signal.SIGTERM], called
        print("ok")

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_ends_open_streams_and_still_calls_the_previous_handler(backend: str) -> None:
    # In a child process: the chain is process-wide, and pytest's own process must not get it.
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_SCRIPT, backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.anyio
async def test_drain_streams_ends_every_stream_and_waits_for_them() -> None:
    # For a lifespan's shutdown: when it returns, each stream has sent its clean end.
    async def endless() -> AsyncIterator[dict[str, str]]:
        while True:
            yield {"data": "tick"}
            await anyio.sleep(3600)

    async with (
        stream_asgi(EventSourceResponse(endless())) as first,
        stream_asgi(EventSourceResponse(endless())) as second,
    ):
        with anyio.fail_after(5):
            for stream in (first, second):
                await stream.start()
                await stream.receive_chunk()
            assert await drain_streams(timeout=5)
            assert first.app_done
            assert second.app_done
            assert await drain_streams(timeout=5)  # nothing left: at once
        for stream in (first, second):
            with anyio.fail_after(5):
                await stream.read_all()
            assert stream.complete  # the final empty body came before drain_streams returned


async def _a_late_stream_ends_at_once_whatever_its_grace() -> None:
    shutdown_streams()
    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(endless(), shutdown_grace_period=30)) as late:
            await late.start()
            assert await late.read_all() == OPEN
            assert late.complete


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_that_starts_after_the_shutdown_skips_its_grace_period(backend: str) -> None:
    in_own_loop(backend, _a_late_stream_ends_at_once_whatever_its_grace)


async def _concurrent_drains_both_see_the_end() -> None:
    results: list[bool] = []

    async def drain() -> None:
        results.append(await drain_streams(timeout=30))

    with anyio.fail_after(5):  # neither waits its 30 s
        async with stream_asgi(EventSourceResponse(endless(), ping=0)) as stream:
            assert await stream.receive_chunk() == OPEN
            async with anyio.create_task_group() as group:
                group.start_soon(drain)
                group.start_soon(drain)
    assert results == [True, True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_drains_both_return_when_the_streams_end(backend: str) -> None:
    in_own_loop(backend, _concurrent_drains_both_see_the_end)


async def _the_shutdown_sets_the_event_for_a_farewell() -> None:
    # sse-starlette's idiom: the library sets the event on shutdown, and a generator watching
    # it says goodbye within the grace period.
    event = anyio.Event()

    async def polite() -> AsyncIterator[str]:
        yield "hello"
        await event.wait()
        yield "goodbye"

    response = EventSourceResponse(polite(), ping=0, shutdown_event=event, shutdown_grace_period=30)
    with anyio.fail_after(5):
        async with stream_asgi(response) as stream:
            assert await stream.receive_chunk() == OPEN
            assert (await stream.events().next_event()).data == "hello"
            shutdown_streams()
            assert event.is_set()
            assert await stream.read_all() == b"data: goodbye\n\n"
            assert stream.complete


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shutdown_sets_the_shutdown_event_for_a_farewell(backend: str) -> None:
    in_own_loop(backend, _the_shutdown_sets_the_event_for_a_farewell)


async def test_shutting_down_one_stream_leaves_its_shared_event_alone(anyio_backend: str) -> None:
    event = anyio.Event()
    first = EventSourceResponse(endless(), ping=0, shutdown_event=event)
    with anyio.fail_after(5):
        async with (
            stream_asgi(first) as one,
            stream_asgi(EventSourceResponse(endless(), ping=0, shutdown_event=event)) as other,
        ):
            assert await one.receive_chunk() == OPEN
            assert await other.receive_chunk() == OPEN
            first.shutdown()
            assert await one.read_all() == b""
            assert not event.is_set()
            with anyio.move_on_after(0.05):
                await other.read_all()
            assert not other.complete  # the other stream goes on
