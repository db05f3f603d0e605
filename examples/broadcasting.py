"""Broadcasting: clients subscribe, a REST endpoint sends to all, a status endpoint counts them.

This is the program people usually write with a list of ``asyncio.Queue`` objects, one per client,
which grow without bound when a client stalls and lose every message sent while a client
reconnects. Here one :class:`ssehub.Broker` topic does the work: each client has a bounded queue,
the broker keeps a short history, and a browser reconnecting with ``Last-Event-ID`` gets exactly
what it missed.

Run it: ``uv run python examples/broadcasting.py``, then in two terminals::

    curl -N http://127.0.0.1:8000/stream
    curl -X POST http://127.0.0.1:8000/send -H 'content-type: application/json' \
         -d '{"message": "hello", "event": "greeting"}'
    curl http://127.0.0.1:8000/clients
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import Broker, EventSourceResponse, EventValidationError

__all__ = ["TOPIC", "app", "broker", "main"]

TOPIC = "broadcast"
MAX_MESSAGE_BYTES = 64 * 1024

broker = Broker(history_size=100, queue_size=100)


async def stream(request: Request) -> Response:
    """Subscribe this client to every broadcast (resuming after ``Last-Event-ID`` if sent)."""
    subscription = broker.subscribe([TOPIC], request.headers.get("last-event-id"))
    return EventSourceResponse(subscription)


def _error(detail: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_message", "detail": detail}, status_code=400)


async def send(request: Request) -> Response:
    """Send ``{"message": ..., "event": optional name}`` to every connected client."""
    body = await request.body()
    if len(body) > MAX_MESSAGE_BYTES:
        return JSONResponse(
            {"error": "body_too_large", "detail": f"at most {MAX_MESSAGE_BYTES} bytes"},
            status_code=413,
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return _error("the body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), str):
        return _error('expected {"message": "<text>", "event": "<optional name>"}')
    event = payload.get("event")
    if event is not None and not isinstance(event, str):
        return _error("event must be a string")
    try:
        stored = await broker.publish(TOPIC, payload["message"], event=event)
    except EventValidationError as exc:  # CR/LF in the event name: rejected, never stripped
        return _error(str(exc))
    return JSONResponse({"id": stored.id, "delivered_to": broker.subscriber_count([TOPIC])})


async def clients(request: Request) -> Response:
    """How many clients are connected right now."""
    return JSONResponse({"clients": broker.subscriber_count([TOPIC])})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with broker:  # owns the broker's tasks; leaving ends every stream cleanly
        yield


app = Starlette(
    routes=[
        Route("/stream", stream),
        Route("/send", send, methods=["POST"]),
        Route("/clients", clients),
    ],
    lifespan=lifespan,
)


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub broadcasting example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
