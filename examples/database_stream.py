"""A database stream: rows of a table as SSE events, with SQLAlchemy async and aiosqlite.

* ``POST /messages`` with ``{"text": "..."}`` stores a row and wakes every stream.
* ``GET /stream`` sends every stored row (oldest first) as a typed ``message.created`` event whose
  id is the row id, then waits for new rows. A reconnecting client sends ``Last-Event-ID`` and
  gets only the rows after it: the table itself is the replay history.

The database session is opened **inside the generator**, once per wake-up. A session from a
request-scoped dependency would be closed as soon as the endpoint returns, which is before the
response starts streaming. New rows are announced through an in-process signal, so an idle stream
waits instead of polling the database (with several server processes, use the ssehub broker or
your database's notifications instead).

Run it: ``uv run python examples/database_stream.py`` (``DATABASE_URL`` defaults to a file
``messages.db`` in the working directory), then ``curl -N http://127.0.0.1:8000/stream`` and
``curl -X POST -d '{"text": "hi"}' http://127.0.0.1:8000/messages``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import EventSourceResponse, ServerSentEvent
from ssehub.protocols import EventProtocol

__all__ = ["MESSAGES", "app", "create_app", "main"]

PAGE = 100  # rows per query: bounded memory however far behind a client is
MAX_TEXT = 1000
# A row id as a client may send it back: ASCII digits only, and few enough to fit SQLite's
# 64-bit integers. str.isdigit() is not enough: it accepts "²" (header byte 0xB2, as Starlette
# decodes headers as Latin-1), which int() then refuses.
ROW_ID = re.compile(r"[0-9]{1,18}")
SURROGATE = re.compile(r"[\ud800-\udfff]")  # a lone surrogate has no UTF-8 form


class Base(DeclarativeBase):
    pass


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(MAX_TEXT))


@dataclasses.dataclass(frozen=True)
class MessageCreated:
    """The payload of a ``message.created`` event."""

    id: int
    text: str


MESSAGES = EventProtocol("messages", ["1"])
CREATED = MESSAGES.kind("message.created", MessageCreated)


class Signal:
    """Wakes every waiting stream when a row is added (no polling)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def current(self) -> anyio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()


def create_app(database_url: str) -> Starlette:
    """Build the application for ``database_url`` (an async SQLAlchemy URL)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = create_async_engine(database_url)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        try:
            yield {"sessions": async_sessionmaker(engine, expire_on_commit=False), "new": Signal()}
        finally:
            await engine.dispose()

    async def add_message(request: Request) -> Response:
        try:
            body = await request.json()
            text = body["text"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: deep nesting
            return JSONResponse({"error": 'send {"text": "..."}'}, status_code=400)
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
            return JSONResponse({"error": f"text: 1..{MAX_TEXT} characters"}, status_code=400)
        if SURROGATE.search(text):  # JSON's "\ud800" escape: not text SQLite (UTF-8) can store
            return JSONResponse({"error": "text must be valid Unicode"}, status_code=400)
        sessions: async_sessionmaker[AsyncSession] = request.state.sessions
        async with sessions() as session, session.begin():
            row = Message(text=text)
            session.add(row)
        request.state.new.notify()
        return JSONResponse({"id": row.id}, status_code=201)

    async def stream(request: Request) -> Response:
        last_event_id = request.headers.get("last-event-id", "0") or "0"
        if ROW_ID.fullmatch(last_event_id) is None:
            return JSONResponse({"error": "Last-Event-ID must be a row id"}, status_code=400)
        # Converted here, before answering: a value the generator could not use must get a
        # 400, not a 200 followed by a crash in mid-stream.
        start_after = int(last_event_id)
        sessions: async_sessionmaker[AsyncSession] = request.state.sessions
        signal: Signal = request.state.new

        async def rows() -> AsyncIterator[ServerSentEvent]:
            after = start_after
            while True:
                # Take the signal *before* querying: a row added during the query then still
                # wakes us, so no row can slip between the query and the wait.
                woken = signal.current()
                async with sessions() as session:  # opened here, inside the generator
                    result = await session.scalars(
                        select(Message).where(Message.id > after).order_by(Message.id).limit(PAGE)
                    )
                    page = list(result)
                for row in page:
                    after = row.id
                    yield CREATED.encode(MessageCreated(row.id, row.text), id=row.id)
                if len(page) < PAGE:
                    await woken.wait()

        return EventSourceResponse(rows())

    return Starlette(
        routes=[
            Route("/messages", add_message, methods=["POST"]),
            Route("/stream", stream),
        ],
        lifespan=lifespan,
    )


app = create_app(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///messages.db"))


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub database-stream example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
