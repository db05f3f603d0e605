"""A FastAPI app in FastAPI's own SSE idiom, streamed by ssehub; served by ``test_fastapi_uvicorn``.

Run by the command a user types, from the project root:
``uvicorn tests.integration.fastapi_app:app``. The path operations are written exactly as for
``fastapi.sse``; the router's ``route_class`` is the only ssehub-specific line.

* ``/ticks?count=N``: N models then an ``end`` event, then the stream ends.
* ``/forever``: one model, then waits forever; its ``finally`` counts the streams closed, which
  ``/closed`` reports (waiting up to 5 s for at least ``?at_least=N``).
* ``/feed?topic=T`` with ``Last-Event-ID``: a broker subscription, resumed; ``POST
  /stories/{topic}`` publishes to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from ssehub import Broker, InvalidTopic, Subscription
from ssehub.fastapi import EventSourceRoute

broker = Broker()
router = APIRouter(route_class=EventSourceRoute)


class Tick(BaseModel):
    n: int


class Story(BaseModel):
    title: str


class Closed:
    """How many ``/forever`` streams have run their ``finally``, and an event per change."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = anyio.Event()

    def add(self) -> None:
        self.count += 1
        self.changed.set()
        self.changed = anyio.Event()


@router.get("/ticks", response_class=EventSourceResponse)
async def ticks(count: int = 3) -> AsyncIterable[Tick]:
    for n in range(count):
        yield Tick(n=n)
    yield ServerSentEvent(raw_data="bye", event="end")


@router.get("/forever", response_class=EventSourceResponse)
async def forever(request: Request) -> AsyncIterable[Tick]:
    try:
        yield Tick(n=0)
        await anyio.sleep_forever()
    finally:
        request.app.state.closed.add()


@router.get("/closed")
async def closed(request: Request, at_least: int = 1) -> dict[str, int]:
    state: Closed = request.app.state.closed
    with anyio.move_on_after(5):
        while state.count < at_least:
            await state.changed.wait()
    return {"closed": state.count}


@router.get("/feed", response_class=EventSourceResponse)
async def feed(
    topic: Annotated[list[str], Query()],
    last_event_id: Annotated[str | None, Header()] = None,
) -> Subscription:
    try:
        return broker.subscribe(topic, last_event_id)
    except InvalidTopic as exc:
        raise HTTPException(400, detail=str(exc)) from exc


@router.post("/stories/{topic}")
async def publish(topic: str, story: Story) -> dict[str, str]:
    stored = await broker.publish(topic, story.model_dump(), event="story")
    return {"id": stored.id}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.closed = Closed()
    async with broker:
        yield


app = FastAPI(lifespan=lifespan)
app.include_router(router)
