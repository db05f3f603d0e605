"""The hub benchmarks' baseline: a broadcaster built the way sse-starlette's own example does it.

sse-starlette's broadcasting example (``examples/02_broadcasting.py`` in its repository) keeps a
list of per-client ``asyncio.Queue`` objects, puts every message into each of them with
``put_nowait``, disconnects a client whose queue is full (a sentinel ends its stream), and feeds
each queue to an ``sse_starlette.EventSourceResponse`` through an async iterator that asks
``request.is_disconnected()`` before each event. This module is that design, rewritten here,
with two changes so that the load generator can drive it exactly like the hub:

* the HTTP API of ``ssehub serve``: ``GET /events?topic=T``, ``POST /publish`` with JSON
  ``{"topic": T, "data": ..., "event": ...}`` answered with ``{"id", "topics", "subscribers"}``,
  and ``GET /status`` answered with ``{"connections": n}``; one client list per topic;
* every event gets an ``id:`` (a counter), as the hub's do, so both write frames of the same
  shape (the example sends no ids and does not honour ``Last-Event-ID``; neither does this).

The per-client queue bound defaults to 1 000 (the hub's default) instead of the example's 100,
so both servers shed a slow client after the same backlog.

Run: ``python benchmarks/baseline_broadcaster.py --port 8001`` (uvicorn, uvloop, httptools).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Broadcaster", "create_app", "main"]

DEFAULT_QUEUE_SIZE = 1000


class _Disconnect:
    """Queued to end the stream of a client that was evicted for being slow."""


_DISCONNECT = _Disconnect()


class _ClientStream:
    """One client's async iterator over its queue (the example's ``BroadcastStream``)."""

    def __init__(self, request: Request, broadcaster: Broadcaster, topic: str) -> None:
        self.request = request
        self.broadcaster = broadcaster
        self.topic = topic
        self.queue: asyncio.Queue[Any] | None = None
        self.closed = False

    def __aiter__(self) -> _ClientStream:
        if not self.closed and self.queue is None:
            self.queue = self.broadcaster.add_client(self.topic)
        return self

    async def __anext__(self) -> ServerSentEvent:
        if self.closed:
            raise StopAsyncIteration
        try:
            item = await self._next_item()
        except BaseException:
            # Cancellation (a client disconnect) is a BaseException: clean up on every exit.
            self.aclose_now()
            raise
        if item is _DISCONNECT:
            self.aclose_now()
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def _next_item(self) -> Any:
        # The example asks the request before every event whether the client is gone.
        if await self.request.is_disconnected():
            return _DISCONNECT
        assert self.queue is not None
        return await self.queue.get()

    def aclose_now(self) -> None:
        self.closed = True
        if self.queue is not None:
            self.broadcaster.remove_client(self.topic, self.queue)

    async def aclose(self) -> None:
        self.aclose_now()


class Broadcaster:
    """Per-topic lists of bounded per-client queues; a full queue disconnects its client."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.clients: dict[str, list[asyncio.Queue[Any]]] = {}
        self.next_id = 0

    def add_client(self, topic: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.queue_size)
        self.clients.setdefault(topic, []).append(queue)
        return queue

    def remove_client(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        queues = self.clients.get(topic, [])
        if queue in queues:
            queues.remove(queue)

    def disconnect_client(self, topic: str, queue: asyncio.Queue[Any]) -> None:
        self.remove_client(topic, queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(_DISCONNECT)

    def broadcast(self, topic: str, data: str, event: str | None) -> tuple[str, int]:
        self.next_id += 1
        event_id = str(self.next_id)
        queues = self.clients.get(topic, [])
        sse = ServerSentEvent(data=data, event=event, id=event_id)
        full = []
        for queue in queues:
            try:
                queue.put_nowait(sse)
            except asyncio.QueueFull:
                full.append(queue)
        for queue in full:
            self.disconnect_client(topic, queue)
        return event_id, len(queues)

    @property
    def client_count(self) -> int:
        return sum(len(queues) for queues in self.clients.values())


def create_app(queue_size: int = DEFAULT_QUEUE_SIZE) -> Starlette:
    """The baseline app: ``GET /events``, ``POST /publish``, ``GET /status``."""
    broadcaster = Broadcaster(queue_size)

    async def events(request: Request) -> Response:
        topic = request.query_params.get("topic")
        if not topic:
            return JSONResponse({"error": "missing_topic"}, status_code=400)
        return EventSourceResponse(_ClientStream(request, broadcaster, topic))

    async def publish(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            topic, data = body["topic"], body["data"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "invalid_body"}, status_code=400)
        if not isinstance(data, str):
            data = json.dumps(data, separators=(",", ":"))
        event_id, subscribers = broadcaster.broadcast(topic, data, body.get("event"))
        return JSONResponse({"id": event_id, "topics": [topic], "subscribers": subscribers})

    async def status(request: Request) -> Response:
        return JSONResponse({"connections": broadcaster.client_count})

    return Starlette(
        routes=[
            Route("/events", events, methods=["GET"]),
            Route("/publish", publish, methods=["POST"]),
            Route("/status", status, methods=["GET"]),
        ]
    )


def main() -> None:
    """Serve the baseline with uvicorn (uvloop, httptools, one worker, no access log)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.queue_size),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
