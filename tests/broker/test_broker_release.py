"""A subscription nobody can read any more is released (issue 19 item 2).

The broker holds each subscription's state, never the ``Subscription`` handle, so a handle that
is dropped unclosed is garbage collected and the broker ends its state with
``EndReason.ABANDONED``: it leaves the statistics and ``on_unsubscribe`` runs, on the event loop
thread, soon after. The first tests run the user code of the issue through the ASGI app with a
scripted disconnect; the rest pin down the release itself: from another thread, from inside the
fan-out, at broker exit, at interpreter shutdown, and never while someone still waits on it.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import anyio.to_thread
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from ssehub import EventSourceResponse
from ssehub.broker import Broker, EndReason, Item, StoredEvent, Subscription
from ssehub.testing import ManualClock, stream_asgi

pytestmark = pytest.mark.anyio


class Ended:
    """An ``on_unsubscribe`` hook that records what ended, where, and lets a test wait for it."""

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self.reasons: list[EndReason | None] = []
        self.threads: list[int] = []
        self._event: anyio.Event | None = None

    def __call__(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)
        self.reasons.append(subscription.end_reason)
        self.threads.append(threading.get_ident())
        if self._event is not None:
            self._event.set()

    async def wait_for(self, count: int, within: float = 5) -> None:
        with anyio.fail_after(within):
            while len(self.reasons) < count:
                self._event = anyio.Event()
                await self._event.wait()


@contextmanager
def collector_off() -> Iterator[None]:
    """Only reference counting frees objects inside (so a pass proves no cycle was involved)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def user_app(broker: Broker) -> Starlette:
    """The code from the issue, as a user writes it: no ``async with``, no ``close()``."""

    async def feed(request: Request) -> EventSourceResponse:
        sub = broker.subscribe(["news"])

        async def gen() -> AsyncIterator[Item]:
            async for item in sub:
                yield item

        return EventSourceResponse(gen())

    return Starlette(routes=[Route("/feed", feed)])


async def stream_then_disconnect(app: Starlette, broker: Broker) -> None:
    async with stream_asgi(app, "/feed") as stream:
        await stream.start()
        assert stream.status_code == 200
        assert broker.statistics().subscribers == 1
        stored = await broker.publish("news", "hello")
        event = await stream.events().next_event()
        assert (event.data, event.id) == ("hello", stored.id)
        await stream.disconnect()
        await stream.wait_closed()


# ------------------------------------------------------------------------ the code


async def test_a_subscription_in_the_users_generator_is_released_after_a_disconnect() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        with anyio.fail_after(5):
            await stream_then_disconnect(user_app(broker), broker)
        gc.collect()
        await ended.wait_for(1)
        assert broker.statistics().subscribers == 0
        assert broker.subscriber_count("news") == 0
        assert ended.reasons == [EndReason.ABANDONED]
        # The hook gets a Subscription on the released state (the original was collected).
        released = ended.subscriptions[0]
        assert isinstance(released, Subscription)
        assert released.topics == ("news",)
        assert released.closed
    assert ended.reasons == [EndReason.ABANDONED]  # the broker's exit found nothing more to end


async def test_the_response_alone_releases_it_without_the_cyclic_collector() -> None:
    """Within about a second means without waiting for the cyclic collector: reference counting
    must free the user's generator and its subscription when the response ends."""
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        with collector_off(), anyio.fail_after(5):
            await stream_then_disconnect(user_app(broker), broker)
            await ended.wait_for(1, within=1)
        assert broker.statistics().subscribers == 0
        assert ended.reasons == [EndReason.ABANDONED]


async def test_an_event_source_response_of_the_subscription_still_closes_it() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:

        async def feed(request: Request) -> EventSourceResponse:
            return EventSourceResponse(broker.subscribe("news"))

        app = Starlette(routes=[Route("/feed", feed)])
        with anyio.fail_after(5):
            await stream_then_disconnect(app, broker)
        assert ended.reasons == [EndReason.CLOSED]  # closed by the response, at once
        assert broker.statistics().subscribers == 0


# ------------------------------------------------------------------------------ the release


async def test_a_dropped_subscription_is_released_by_reference_counting() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        kept = broker.subscribe(["a", "b"])
        with collector_off():
            sub = broker.subscribe(["a", "b"])
            handle = weakref.ref(sub)
            assert broker.subscriber_count("a") == 2
            del sub
            assert handle() is None
            await ended.wait_for(1)
        assert ended.reasons == [EndReason.ABANDONED]
        assert broker.subscriber_count(["a", "b"]) == 1
        assert broker.statistics().topics == 2
        # The fan-out no longer reaches it; the one kept still gets everything.
        stored = await broker.publish("a", "x")
        assert kept.receive_nowait() == [stored]
        assert broker.statistics().delivered == 1


async def test_a_closed_subscription_is_not_released_again() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        async with broker.subscribe("t") as sub:
            pass
        del sub
        gc.collect()
        assert not broker._releaser._scheduled  # nothing was queued for the loop
        assert ended.reasons == [EndReason.CLOSED]


async def test_the_hooks_see_the_same_handle_while_it_lives() -> None:
    joined: list[Subscription] = []
    ended = Ended()
    async with Broker(on_subscribe=joined.append, on_unsubscribe=ended) as broker:
        sub = broker.subscribe("t")
        assert joined == [sub]
        sub.close()
        assert ended.subscriptions == [sub]


async def test_a_subscription_someone_waits_on_is_not_released() -> None:
    got: list[list[Item]] = []
    waiting = anyio.Event()

    async def receive_from_a_temporary(broker: Broker) -> None:
        # Nothing but this call's own frame holds the handle while it waits.
        coroutine = broker.subscribe("t").receive()
        waiting.set()
        got.append(await coroutine)

    async with Broker() as broker, anyio.create_task_group() as group:
        group.start_soon(receive_from_a_temporary, broker)
        with anyio.fail_after(5):
            await waiting.wait()
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            await anyio.wait_all_tasks_blocked()
            assert broker.statistics().subscribers == 1
            stored = await broker.publish("t", "still read")
    assert got == [[stored]]


async def test_a_handle_dropped_in_another_thread_is_released_on_the_loop_thread() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        box = [broker.subscribe("t")]
        handle = weakref.ref(box[0])
        # The worker thread drops the last reference: the weak-reference callback runs there.
        await anyio.to_thread.run_sync(box.clear)
        assert handle() is None
        await ended.wait_for(1)
        assert ended.reasons == [EndReason.ABANDONED]
        assert ended.threads == [threading.get_ident()]
        assert broker.statistics().subscribers == 0


async def test_a_handle_dropped_during_the_fan_out_is_released_after_it() -> None:
    """The callback may run anywhere, here in the middle of ``_deliver`` iterating the
    subscribers of the topic: it must not change them under the loop."""
    ended = Ended()
    others: list[Subscription] = []

    def drop_the_others(event: StoredEvent) -> bool:
        others.clear()  # the last references: their states are released right here
        return True

    async with Broker(on_unsubscribe=ended) as broker:
        first = broker.subscribe("t", visible=drop_the_others)
        others.extend(broker.subscribe("t") for _ in range(3))
        stored = await broker.publish("t", "private", private=True)
        await ended.wait_for(3)
        assert ended.reasons == [EndReason.ABANDONED] * 3
        assert first.receive_nowait() == [stored]
        assert broker.statistics().subscribers == 1


async def test_abandoned_before_the_broker_exits_ends_as_abandoned() -> None:
    ended = Ended()
    async with Broker(on_unsubscribe=ended) as broker:
        broker.subscribe("t")  # dropped at once; the release is queued for the loop
        kept = broker.subscribe("t")
    assert ended.reasons == [EndReason.ABANDONED, EndReason.BROKER_CLOSED]
    assert kept.end_reason is EndReason.BROKER_CLOSED


async def test_an_abandoned_subscription_leaves_the_connection_age_reaper() -> None:
    clock = ManualClock()
    ended = Ended()
    async with Broker(
        max_connection_age=50, max_connection_age_jitter=0, clock=clock, on_unsubscribe=ended
    ) as broker:
        broker.subscribe("t")
        await ended.wait_for(1)
        kept = broker.subscribe("t")
        clock.advance(60)
        await ended.wait_for(2)
        assert ended.reasons == [EndReason.ABANDONED, EndReason.MAX_AGE]
        assert kept.end_reason is EndReason.MAX_AGE


def test_the_handle_is_small() -> None:
    assert Subscription.__slots__ == ("__weakref__", "_state")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_unclosed_subscription_at_interpreter_exit_is_quiet(backend: str) -> None:
    """A handle dropped after its loop is gone (here one at once, one at interpreter shutdown)
    cannot have its release scheduled any more: the callback must give up silently."""
    script = textwrap.dedent(
        f"""
        import anyio
        from ssehub.broker import Broker, OverflowPolicy, Subscription

        kept = []

        async def main():
            async with Broker() as broker:
                # Built directly, never registered: the broker's exit does not end them.
                for _ in range(2):
                    kept.append(
                        Subscription(
                            broker, ("t",), maxsize=1, policy=OverflowPolicy.DISCONNECT,
                            resume_id=None, reset=None,
                        )
                    )

        anyio.run(main, backend={backend!r})
        assert not kept[0].closed
        del kept[0]  # the loop is closed (asyncio) or its run finished (trio)
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
