"""A memory-channel producer: ``data_sender_callable`` feeds the stream the response sends.

The producer runs alongside the response (started and cancelled by it); the response streams
whatever the producer puts into the memory channel, and ends when the producer closes it.

Run it: ``uv run python examples/memory_channel.py``, then
``curl -N 'http://127.0.0.1:8000/events?count=5'``.
"""

from __future__ import annotations

import argparse
from functools import partial

import anyio
import uvicorn
from anyio.streams.memory import MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import EventSourceResponse, ServerSentEvent

__all__ = ["app", "main", "producer"]

MAX_COUNT = 1000


async def producer(send: MemoryObjectSendStream[ServerSentEvent], count: int, delay: float) -> None:
    """Send ``count`` numbered events into the channel, then close it (which ends the stream)."""
    async with send:  # closing the send side ends the response's iteration
        for n in range(1, count + 1):
            # send() waits while the channel is full: a slow client slows the producer down
            # instead of growing a queue without bound.
            await send.send(ServerSentEvent(f"item {n}", event="item", id=n))
            await anyio.sleep(delay)


async def events(request: Request) -> Response:
    """Stream ``count`` items (default 10), ``delay`` seconds apart (default 0.5)."""
    try:
        count = int(request.query_params.get("count", "10"))
        delay = float(request.query_params.get("delay", "0.5"))
    except ValueError:
        return JSONResponse({"error": "count and delay must be numbers"}, status_code=400)
    if not (1 <= count <= MAX_COUNT and 0 <= delay <= 60):
        return JSONResponse({"error": f"count: 1..{MAX_COUNT}, delay: 0..60"}, status_code=400)
    send, receive = anyio.create_memory_object_stream[ServerSentEvent](max_buffer_size=16)
    return EventSourceResponse(
        receive, data_sender_callable=partial(producer, send, count, delay), ping=15
    )


app = Starlette(routes=[Route("/events", events)])


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub memory-channel example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
