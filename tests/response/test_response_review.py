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
    _prints_ok(UNCHAIN_SCRIPT, backend)
    assert signal.SIGINT  # the names the script relies on exist here too


# -- second review (7 Dec) ---------------------------------------------------------------------


class Boom(Exception):
    pass


def _recording_send(bodies: list[tuple[bytes, bool]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        await anyio.lowlevel.checkpoint()  # as a server's flow control or a middleware does
        if message["type"] == "http.response.body":
            bodies.append((message["body"], message.get("more_body", False)))

    return send


async def _never_receive() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError  # pragma: no cover


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_what_the_content_yielded_before_it_raised_is_sent_first(kind: str) -> None:
    # As sse-starlette: every item yielded before the error reaches the client, then the error
    # ends the response without a clean end of the body.
    opened = anyio.Event()
    token = anyio.lowlevel.current_token()

    async def agen() -> Any:
        await opened.wait()  # the pump waits for frames when they come
        yield "1"
        yield "2"
        yield "3"
        raise Boom

    def sgen() -> Iterator[str]:
        anyio.from_thread.run(opened.wait, token=token)
        yield "1"
        yield "2"
        yield "3"
        raise Boom

    bodies: list[tuple[bytes, bool]] = []
    send = _recording_send(bodies)

    async def send_then_open(message: dict[str, Any]) -> None:
        await send(message)
        if message.get("body") == OPEN:
            opened.set()

    response = EventSourceResponse(agen() if kind == "async" else sgen(), ping=0)
    with anyio.fail_after(5), pytest.raises(Boom):
        await response(http_scope(), _never_receive, send_then_open)
    sent = b"".join(body for body, _ in bodies)
    assert sent == OPEN + b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert all(more for _, more in bodies)  # no final body: the client sees a broken stream


async def test_an_encoding_error_comes_after_the_items_before_it() -> None:
    async def gen() -> Any:
        yield "fine"
        yield object()  # has no SSE form

    bodies: list[tuple[bytes, bool]] = []
    with anyio.fail_after(5), pytest.raises(Exception, match="has no SSE form"):
        await EventSourceResponse(gen(), ping=0)(
            http_scope(), _never_receive, _recording_send(bodies)
        )
    assert b"".join(body for body, _ in bodies) == OPEN + b"data: fine\n\n"


async def test_a_pump_aborted_before_it_runs_stops_at_once() -> None:
    # Under an eager task factory (Python 3.12+), the disconnect watch runs inside
    # create_task: a client already gone aborts the pump before its loop has a scope.
    from ssehub._response._outbox import Outbox
    from ssehub._response._pump import Pump

    bodies: list[tuple[bytes, bool]] = []
    pump = Pump(
        _recording_send(bodies),
        Outbox(),
        ping=0,
        ping_bytes=bytes,
        send_timeout=None,
        final_timeout=1,
    )
    pump.abort()
    with anyio.fail_after(5):
        await pump.run({"type": "http.response.start", "status": 200, "headers": []}, [OPEN])
    assert pump.stopped
    assert not pump.sent_final
    assert (b"", False) not in bodies


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
def test_a_disconnect_before_the_first_send_ends_the_stream_under_an_eager_task_factory() -> None:
    import asyncio

    async def endless() -> Any:
        while True:
            yield "tick"
            await anyio.sleep(0.01)

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        bodies: list[tuple[bytes, bool]] = []
        async with asyncio.timeout(5):  # type: ignore[attr-defined]
            await EventSourceResponse(endless(), ping=0)(
                http_scope(), gone, _recording_send(bodies)
            )

    asyncio.run(main())


def test_a_disconnect_in_the_same_loop_turn_as_a_send_deadline_is_a_send_timeout() -> None:
    # The deadline cuts the send (its asyncio.timeout is then expiring); the disconnect that
    # comes right after must not try to cut it again (asyncio raises RuntimeError for that).
    import asyncio

    from ssehub import SendTimeoutError
    from ssehub._response._timers import current_clock

    async def main() -> None:
        loop = asyncio.get_running_loop()
        disconnected = loop.create_future()
        blocked = asyncio.Event()

        async def gen() -> Any:
            yield "a"
            await anyio.sleep_forever()

        async def send(message: dict[str, Any]) -> None:
            if message.get("body", b"").startswith(b"data"):
                blocked.set()
                await anyio.sleep_forever()  # the client stopped reading

        async def receive() -> dict[str, Any]:
            await disconnected
            return {"type": "http.disconnect"}

        response = EventSourceResponse(gen(), ping=0, send_timeout=0.2)
        task = loop.create_task(response(http_scope(), receive, send))
        await blocked.wait()
        handle = current_clock()._handle()  # type: ignore[misc]
        assert handle is not None
        loop.call_at(handle.when(), disconnected.set_result, None)
        with pytest.raises(SendTimeoutError):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


async def test_head_releases_the_content_it_never_starts() -> None:
    send_stream, receive_stream = anyio.create_memory_object_stream[str](0)
    closed: list[str] = []

    class Items:
        """A sync iterator with a close(), as a generator is."""

        def __iter__(self) -> Iterator[str]:
            return self

        def __next__(self) -> str:
            return "x"

        def close(self) -> None:
            closed.append("iterator")

    class SharedFeed:
        """An iterable that makes an iterator per stream: not the response's to close."""

        def __aiter__(self) -> Any:
            raise AssertionError("HEAD never iterates")  # pragma: no cover

        async def aclose(self) -> None:
            closed.append("shared feed")  # pragma: no cover

    head = http_scope(method="HEAD")
    with anyio.fail_after(5):
        async with send_stream:
            await EventSourceResponse(receive_stream)(head, _never_receive, _recording_send([]))
            with pytest.raises(anyio.BrokenResourceError):
                await send_stream.send("nobody reads this")  # the receiving end was closed
        await EventSourceResponse(Items())(head, _never_receive, _recording_send([]))
        await EventSourceResponse(SharedFeed())(head, _never_receive, _recording_send([]))
    assert closed == ["iterator"]


async def test_a_client_leaving_a_websocket_denial_ends_the_stream() -> None:
    async def endless() -> Any:
        while True:
            yield "tick"
            await anyio.sleep(0.01)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": 1001}

    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    scope = {**http_scope(), "type": "websocket"}
    with anyio.fail_after(5):
        await EventSourceResponse(endless(), ping=0)(scope, receive, send)
    assert sent[0] == "websocket.http.response.start"


async def test_a_failing_final_send_does_not_replace_the_servers_cancellation() -> None:
    opened = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message.get("more_body") is False:
            raise OSError("client disconnected")  # ASGI allows it once the client is gone
        if message["type"] == "http.response.body":
            opened.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(
                EventSourceResponse(_endless_ticks(), ping=0), http_scope(), _never_receive, send
            )
            await opened.wait()
            group.cancel_scope.cancel()  # the server ends its grace period: cancelled, no error
    assert group.cancel_scope.cancelled_caught


async def _endless_ticks() -> Any:
    while True:
        await anyio.sleep(3600)
        yield "never"  # pragma: no cover


SIGINT_AFTER_RESTORE = textwrap.dedent(
    """
    import signal, sys
    import anyio
    from ssehub import EventSourceResponse
    from ssehub.testing import stream_asgi

    async def endless():
        while True:
            await anyio.sleep(3600)
            yield "never"

    async def main():
        with anyio.fail_after(5):
            async with stream_asgi(EventSourceResponse(endless(), ping=0)) as stream:
                assert await stream.receive_chunk() == b": ok\\n\\n"
                # Code that saves and later restores the current handler (uvicorn's
                # capture_signals) replaces ours while the last stream ends...
                saved = signal.signal(signal.SIGINT, lambda signum, frame: None)
                await stream.disconnect()
                await stream.wait_closed()
        signal.signal(signal.SIGINT, saved)  # ...and then puts ours back.

    anyio.run(main, backend=sys.argv[1])
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        print("ok")
    """
)


def test_ctrl_c_still_interrupts_after_another_library_restored_our_handler() -> None:
    # asyncio only: the handler ours replaced is the server's (uvicorn's); under trio it is
    # trio's own, which does nothing once its run is over.
    _prints_ok(SIGINT_AFTER_RESTORE, "asyncio")


def _prints_ok(script: str, backend: str) -> None:
    # In a child process: the signal chain is process-wide, and pytest's own must not get it.
    result = subprocess.run(
        [sys.executable, "-c", script, backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("ending", ["disconnect", "send_timeout"])
async def test_a_content_error_after_the_stream_ended_still_surfaces(ending: str) -> None:
    # The content fails while a send is blocked; the stream then ends without taking another
    # frame (the client leaves, or the send times out): the error is raised all the same.
    blocked = anyio.Event()
    raised = anyio.Event()
    leave = anyio.Event()

    async def gen() -> Any:
        yield "a"
        try:
            raise Boom
        finally:
            raised.set()

    async def send(message: dict[str, Any]) -> None:
        if message.get("body", b"").startswith(b"data"):
            blocked.set()
            await anyio.sleep_forever()  # the client stopped reading

    async def receive() -> dict[str, Any]:
        await leave.wait()
        return {"type": "http.disconnect"}

    timeout = 0.2 if ending == "send_timeout" else None
    response = EventSourceResponse(gen(), ping=0, send_timeout=timeout)
    errors: list[Exception] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(_run_capturing, errors, response, receive, send)
            await blocked.wait()
            await raised.wait()
            leave.set()
    assert [type(error) for error in errors] == [Boom]


async def _run_capturing(errors: list[Exception], app: Any, receive: Any, send: Any) -> None:
    try:
        await app(http_scope(), receive, send)
    except Exception as exc:
        errors.append(exc)


async def test_a_content_error_during_a_shutdown_is_not_a_clean_end() -> None:
    event = anyio.Event()
    started = anyio.Event()
    bodies: list[tuple[bytes, bool]] = []

    async def gen() -> Any:
        started.set()
        await event.wait()
        yield "bye"
        raise Boom

    response = EventSourceResponse(gen(), ping=0, shutdown_event=event)
    errors: list[Exception] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            send = _recording_send(bodies)
            group.start_soon(_run_capturing, errors, response, _never_receive, send)
            await started.wait()
            event.set()
    assert [type(error) for error in errors] == [Boom]
    assert bodies == [(OPEN, True), (b"data: bye\n\n", True)]  # the farewell, no clean end
