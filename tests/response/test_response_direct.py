"""EventSourceResponse with the ``ssehub.direct_write`` extension (scripted ASGI, no server).

The server side of the extension is played by :class:`Connection`, a small implementation of
the ``DirectWrite``/``FrameWriter`` protocols that appends what it is given to the same list as
the ASGI sends, so the tests see the exact order in which bytes would reach the client.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ssehub._exceptions import SendTimeoutError
from ssehub._frames import DIRECT_WRITE
from ssehub._response._alarms import alarm_clock
from ssehub._response._parked import ParkedStream
from ssehub.broker import Broker
from ssehub.response import EventSourceResponse
from ssehub.testing import http_scope

pytestmark = pytest.mark.anyio

OPEN = b": ok\n\n"


class Connection:
    """One client connection: ASGI ``send`` and direct writes land in ``wire``, in order."""

    def __init__(self, *, offer: bool = True) -> None:
        self.wire: list[tuple[str, bytes]] = []
        self.offer = offer
        self.full = False  # the writer refuses while set (a full socket buffer)
        self.frozen = False  # sends never complete while set (a client that stopped reading)
        self.asked: list[Any] = []
        self.last_write = 0.0
        self.disconnect = anyio.Event()
        self.sent = anyio.Event()  # set by every send
        self.receives = 0
        self.lost: Any = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.frozen:
            await anyio.sleep_forever()
        if message["type"] == "http.response.body":
            self.wire.append(("send", message["body"]))
        self.sent.set()

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    def lose(self) -> None:
        """The client goes away: as the server reports it, to whoever listens."""
        self.disconnect.set()
        callback, self.lost = self.lost, None
        if callback is not None:
            callback()

    def on_disconnect(self, callback: Any) -> None:
        self.lost = callback

    # DirectWrite
    def writer_for(self, send: Any) -> Connection | None:
        self.asked.append(send)
        return self if self.offer and send == self.send else None

    # FrameWriter
    def __call__(self, frame: bytes) -> bool:
        if self.full:
            return False
        self.wire.append(("direct", frame))
        self.last_write = anyio.current_time()
        return True

    def scope(self) -> dict[str, Any]:
        return http_scope("/events", extensions={DIRECT_WRITE: self})

    def bodies(self) -> list[bytes]:
        return [body for _how, body in self.wire]


async def _run(response: EventSourceResponse, conn: Connection, group: Any) -> None:
    group.start_soon(response, conn.scope(), conn.receive, conn.send)


async def _open(conn: Connection, response: EventSourceResponse, group: Any) -> None:
    """Start ``response`` on ``conn`` and return once it sent its opening comment and waits."""
    await _run(response, conn, group)
    await _until(conn, lambda: conn.bodies() == [OPEN])
    await anyio.wait_all_tasks_blocked()


async def _until(conn: Connection, predicate: Any) -> None:
    while not predicate():
        conn.sent = anyio.Event()
        await conn.sent.wait()


async def test_live_events_are_written_directly_in_order_then_the_stream_ends() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, EventSourceResponse(sub, ping=0), group)
                stored = [await broker.publish("t", str(i)) for i in range(3)]
                assert conn.wire[1:] == [("direct", event.encode()) for event in stored]
                assert sub.statistics().peak == 0  # nothing was ever queued
                sub.close()
        assert conn.wire[-1] == ("send", b"")  # the end of the body, after every event
    assert conn.asked == [conn.send]


async def test_refused_frames_are_sent_through_asgi_in_order_and_direct_writes_resume() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, EventSourceResponse(sub, ping=0), group)
                first = await broker.publish("t", "direct")
                conn.full = True
                queued = [await broker.publish("t", f"queued {i}") for i in range(2)]
                conn.full = False
                expected = b"".join(event.encode() for event in queued)

                def caught_up() -> bool:
                    return b"".join(b for how, b in conn.wire[2:] if how == "send") == expected

                await _until(conn, caught_up)
                await anyio.wait_all_tasks_blocked()
                last = await broker.publish("t", "direct again")
                sub.close()
        assert conn.wire[:2] == [("send", OPEN), ("direct", first.encode())]
        # The refused events went out through send (in one or more sends), then direct
        # writes resumed, and the end of the body came last.
        assert b"".join(conn.bodies()) == OPEN + first.encode() + expected + last.encode()
        assert conn.wire[-2:] == [("direct", last.encode()), ("send", b"")]


async def test_without_a_writer_every_frame_goes_through_send() -> None:
    conn = Connection(offer=False)
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, EventSourceResponse(sub, ping=0), group)
                stored = await broker.publish("t", "x")
                await _until(conn, lambda: len(conn.wire) == 2)
                sub.close()
        assert conn.wire == [("send", OPEN), ("send", stored.encode()), ("send", b"")]


async def test_a_source_that_takes_no_writer_is_not_offered_one() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")

        class Plain:  # a FrameSource without attach_writer
            receive_frames = sub.receive_frames
            aclose = sub.aclose

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, EventSourceResponse(Plain(), ping=0), group)
                stored = await broker.publish("t", "x")
                await _until(conn, lambda: len(conn.wire) == 2)
                sub.close()
        assert conn.asked == []
        assert conn.wire[1] == ("send", stored.encode())


async def test_a_disconnect_detaches_the_writer() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            await_response = EventSourceResponse(sub, ping=0)
            async with anyio.create_task_group() as group:
                await _open(conn, await_response, group)
                assert conn.lost is not None
                conn.lose()
        await broker.publish("t", "after the client left")
        # Ending the source ended the stream: its end of body (which a server drops once the
        # client is gone), and nothing after it.
        assert conn.wire == [("send", OPEN), ("send", b"")]
        assert sub.closed
        assert not await_response.active
        # The server reported the disconnect: nothing waited in receive() for it.
        assert conn.receives == 0
        assert conn.lost is None


async def test_with_a_shutdown_event_the_stream_listens_for_the_disconnect_itself() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = EventSourceResponse(sub, ping=0, shutdown_event=anyio.Event())
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, response, group)
                stored = await broker.publish("t", "x")
                assert conn.wire[-1] == ("direct", stored.encode())
                conn.disconnect.set()
        assert conn.receives == 1
        assert sub.closed


async def test_pings_count_idleness_from_the_last_direct_write() -> None:
    conn = Connection()
    interval = 0.3
    async with Broker() as broker:
        sub = broker.subscribe("t")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, EventSourceResponse(sub, ping=interval), group)
                await anyio.sleep(interval * 2 / 3)  # some time passes, then one event
                await broker.publish("t", "x")
                written_at = conn.last_write
                await _until(conn, lambda: any(b.startswith(b": ping") for b in conn.bodies()))
                pinged_at = anyio.current_time()
                sub.close()
        # A ping timed from the opening comment would have gone out interval/3 after the event.
        assert pinged_at - written_at >= interval * 0.9
        assert [how for how, _ in conn.wire[:3]] == ["send", "direct", "send"]


# -- the parked loop (asyncio): no cancel scope while waiting, one alarm per stream ------------


class _Ending(EventSourceResponse):
    """A response whose sending a subclass may end (as the hub's drain does)."""

    _ENDS_SENDING = True
    SHUTDOWN_SEND_TIMEOUT = 0.05


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})], ids=["asyncio"])
async def test_idle_parked_streams_share_one_loop_timer(anyio_backend: Any) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    conns = [Connection() for _ in range(20)]
    async with Broker() as broker:
        subs = [broker.subscribe("t") for _ in conns]
        responses = [EventSourceResponse(sub, ping=30, send_timeout=10) for sub in subs]

        def timers() -> set[Any]:
            return {h for h in loop._scheduled if not h.cancelled()}  # type: ignore[attr-defined]

        with anyio.fail_after(5):
            before = timers()  # fail_after's own
            async with anyio.create_task_group() as group:
                for conn, response in zip(conns, responses, strict=True):
                    await _open(conn, response, group)
                # The generic loop keeps a timer per stream for its ping (and a cancel scope
                # or two); parked streams have one alarm each behind a single timer.
                (timer,) = timers() - before
                assert timer._callback == alarm_clock(loop)._fire
                assert all(isinstance(r._sender, ParkedStream) for r in responses)
                stored = await broker.publish("t", "x")
                assert all(conn.wire[-1] == ("direct", stored.encode()) for conn in conns)
                for sub in subs:
                    sub.close()
        assert all(conn.wire[-1] == ("send", b"") for conn in conns)


async def test_a_ping_to_a_client_that_stopped_reading_times_out() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = EventSourceResponse(sub, ping=0.05, send_timeout=0.05)
        conn.sent = anyio.Event()

        async def freeze_after_the_opening() -> None:
            await conn.sent.wait()
            conn.frozen = True

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(freeze_after_the_opening)
                with pytest.raises(SendTimeoutError):
                    await response(conn.scope(), conn.receive, conn.send)
        assert conn.bodies() == [OPEN]  # the ping never went out
        assert sub.closed


async def test_refused_frames_to_a_client_that_stopped_reading_time_out() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = EventSourceResponse(sub, ping=0, send_timeout=0.05)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:

                async def stop_reading_then_publish() -> None:
                    await _until(conn, lambda: conn.bodies() == [OPEN])
                    await anyio.wait_all_tasks_blocked()
                    conn.full = conn.frozen = True
                    await broker.publish("t", "refused")

                group.start_soon(stop_reading_then_publish)
                with pytest.raises(SendTimeoutError):
                    await response(conn.scope(), conn.receive, conn.send)
        assert sub.closed


@pytest.mark.parametrize("ping", [30, 0], ids=["pings", "no pings"])
async def test_the_end_of_sending_ends_a_waiting_stream_whose_source_stays_open(
    ping: float,
) -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = _Ending(sub, ping=ping)  # with ping=0, no alarm was armed while parked
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, response, group)
                assert not sub.closed
                response._end_sending(anyio.current_time() + 0.01)
        assert conn.wire == [("send", OPEN), ("send", b"")]
        assert sub.closed  # released when the response returned


async def test_the_end_of_sending_cuts_a_send_blocked_on_a_frozen_client() -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = _Ending(sub, ping=0)  # no send timeout: only the end of sending cuts it
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, response, group)
                conn.full = conn.frozen = True
                await broker.publish("t", "refused")
                await anyio.wait_all_tasks_blocked()  # the response is blocked sending it
                response._end_sending(anyio.current_time())
        # It returned (no error), without the final body the client never took.
        assert conn.wire == [("send", OPEN)]
        assert not response._complete
        assert not response.active


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})], ids=["asyncio"])
async def test_an_alarm_ringing_as_frames_arrive_sends_them_and_no_ping(anyio_backend: Any) -> None:
    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = EventSourceResponse(sub, ping=30)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, response, group)
                parked = response._sender
                assert isinstance(parked, ParkedStream)
                conn.full = True
                stored = await broker.publish("t", "queued")  # wakes the stream's task...
                # ...and before it runs, its alarm rings as if the ping were due.
                assert parked.ring(anyio.current_time() + 60) is None
                conn.full = False
                await _until(conn, lambda: len(conn.wire) == 2)
                await anyio.wait_all_tasks_blocked()
                # The frame went out, no ping followed (the frame was activity), and the
                # stream is parked again with its alarm armed for the next ping.
                assert conn.wire == [("send", OPEN), ("send", stored.encode())]
                assert parked._active
                assert not parked._interrupted
                sub.close()
        assert conn.wire[-1] == ("send", b"")


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})], ids=["asyncio"])
async def test_an_ended_stream_is_not_kept_alive_by_its_alarm(anyio_backend: Any) -> None:
    import gc
    import weakref

    conn = Connection()
    async with Broker() as broker:
        sub = broker.subscribe("t")
        response = EventSourceResponse(sub, ping=3600)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await _open(conn, response, group)
                sub.close()
        # Its alarm still sits in the clock's heap, an hour away, but holds nothing.
        ref = weakref.ref(response)
        del response, sub
        gc.collect()
        assert ref() is None
