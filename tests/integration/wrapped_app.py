"""Issue 19 item 2 as a user writes it: a broker subscription iterated by their own generator.

Served from the project root by ``uvicorn tests.integration.wrapped_app:app`` (or hypercorn, also
with ``--worker-class trio``). ``/feed`` is the user's code: no ``async with``, no ``close()``.

``GET /status?finished=F&collect=1&ended=N&within=S`` waits (server side, on events, so the
test polls nothing) until ``F`` requests to ``/feed`` have returned (counted by a middleware
around the app, outside the user's code), then runs ``gc.collect()`` if asked, then waits at
most ``S`` seconds until ``N`` subscriptions have ended (the ``on_unsubscribe`` hook). It
answers ``{"subscribers": ..., "ended": [reasons...], "waited": seconds of that last wait}``.
``POST /publish`` publishes its body to ``news``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ssehub import Broker, EventSourceResponse
from ssehub.broker import Item, Subscription

__all__ = ["app"]

ended: list[str] = []
finished: list[float] = []  # when each /feed request returned
_changed: list[anyio.Event] = []  # the events /status waits on, while one waits


def _notify() -> None:
    for event in _changed:
        event.set()


def _on_unsubscribe(subscription: Subscription) -> None:
    assert subscription.end_reason is not None
    ended.append(subscription.end_reason.value)
    _notify()


async def _wait_until(done: Callable[[], bool], within: float) -> None:
    with anyio.move_on_after(within):
        while not done():
            changed = anyio.Event()
            _changed.append(changed)
            try:
                await changed.wait()
            finally:
                _changed.remove(changed)


broker = Broker(on_unsubscribe=_on_unsubscribe)


async def feed(request: Request) -> EventSourceResponse:
    sub = broker.subscribe(["news"])

    async def gen() -> AsyncIterator[Item]:
        async for item in sub:
            yield item

    return EventSourceResponse(gen())


async def status(request: Request) -> JSONResponse:
    query = request.query_params
    feeds = int(query.get("finished", "0"))
    await _wait_until(lambda: len(finished) >= feeds, 10)
    if query.get("collect"):
        gc.collect()
    want = int(query.get("ended", "0"))
    started = time.monotonic()
    await _wait_until(lambda: len(ended) >= want, float(query.get("within", "0")))
    return JSONResponse(
        {
            "subscribers": broker.statistics().subscribers,
            "ended": ended,
            "waited": time.monotonic() - started,
        }
    )


async def publish(request: Request) -> JSONResponse:
    stored = await broker.publish("news", (await request.body()).decode())
    return JSONResponse({"id": stored.id})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broker:
        yield


class CountFinishedFeeds:
    """Notes when each ``/feed`` request returns: the response has ended by then."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope["path"] == "/feed":
                finished.append(time.monotonic())
                _notify()


app = CountFinishedFeeds(
    Starlette(
        routes=[
            Route("/feed", feed),
            Route("/status", status),
            Route("/publish", publish, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
)
