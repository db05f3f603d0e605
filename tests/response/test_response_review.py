"""Found in review of the streaming core, each pinned by a test that failed before its fix."""

from __future__ import annotations

import gc
import queue
import signal
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from ssehub import EventSourceResponse
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio

OPEN = b": ok\n\n"


async def test_a_sync_generator_blocked_between_items_does_not_hold_the_response() -> None:
    # A blocking generator waits in a worker thread; on disconnect the response must return at
    # once (the thread is abandoned and closes the generator when its wait ends).
    items: queue.Queue[str | None] = queue.Queue()
    waiting = anyio.Event()
    closed = anyio.Event()
    token = anyio.lowlevel.current_token()

    def gen() -> Iterator[str]:
        try:
            yield "first"
            anyio.from_thread.run_sync(waiting.set, token=token)
            while (item := items.get()) is not None:
                yield item
        finally:
            anyio.from_thread.run_sync(closed.set, token=token)

    with anyio.fail_after(5):
        async with stream_asgi(EventSourceResponse(gen(), ping=0)) as stream:
            assert await stream.receive_chunk() == OPEN
            assert (await stream.events().next_event()).data == "first"
            await waiting.wait()  # the generator waits in a worker thread now
            await stream.disconnect()
            await stream.wait_closed()  # returned although the generator is still blocked
        assert not closed.is_set()
        items.put("unblock")  # its wait ends: the abandoned call closes it
        await closed.wait()


async def test_a_failing_close_handler_still_ends_the_stream_and_its_error_surfaces() -> None:
    async def endless() -> Any:
        while True:
            yield "tick"
            await anyio.sleep(0.01)

    async def handler(message: dict[str, Any]) -> None:
        raise RuntimeError("close handler failed")

    response = EventSourceResponse(endless(), ping=0, client_close_handler_callable=handler)
    disconnect = anyio.Event()
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            if len(sent) == 3:
                disconnect.set()

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="close handler failed"):
        await response(http_scope(), receive, send)
    assert response.active is False


def test_event_loops_that_served_streams_are_freed() -> None:
    loops: list[weakref.ref[Any]] = []

    async def one_stream() -> None:
        loops.append(weakref.ref(anyio.lowlevel.current_token().native_token))
        async with stream_asgi(EventSourceResponse(iter(["a"]), ping=5)) as stream:
            await stream.read_all()

    for backend in ("asyncio", "trio", "asyncio"):
        anyio.run(one_stream, backend=backend)
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


UNCHAIN_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    import anyio
    from ssehub import EventSourceResponse
    from ssehub.testing import stream_asgi

    before = signal.getsignal(signal.SIGINT)

    async def main():
        async with stream_asgi(EventSourceResponse(iter(["a"]), ping=0)) as stream:
            await stream.read_all()

    anyio.run(main, backend=sys.argv[1])
    # The last stream ended: the handler that was there before is back.
    assert signal.getsignal(signal.SIGINT) is before, signal.getsignal(signal.SIGINT)
    print("ok")
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_signal_chain_is_removed_when_the_last_stream_ends(backend: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNCHAIN_SCRIPT, backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert signal.SIGINT  # the names the script relies on exist here too
