"""Custom protocols: task monitoring and health monitoring, negotiated per connection.

``GET /events?protocol=tasks`` or ``?protocol=health`` (or the ``X-Protocol`` header) picks the
protocol. The client may also state versions and features, with headers (``X-Protocol-Version``,
``X-Client-Features: batching``) or, from a browser, query parameters (``protocol_version``,
``features=batching``). The stream starts with a ``protocol.handshake`` event; then

* ``tasks`` streams ``task.progress`` for a few simulated jobs updating many times a second.
  With ``batching`` enabled, updates are grouped into ``protocol.batch`` events (count, bytes and
  50 ms bounds); without it they come one by one. A new watcher gets every task's current state
  first.
* ``health`` streams ``health.report`` every few seconds and a ``health.alert`` whenever a
  (simulated) component changes between healthy, warning and critical.

An unknown protocol or version gets a 406 JSON body listing what is available; a browser (which
states its wants in the query string) gets a ``protocol.error`` event with a long ``retry``
instead, because ``EventSource`` hides non-200 answers from the page (see docs/protocols.md).

Run it: ``uv run python examples/custom_protocols.py``, then
``curl -N -H 'X-Client-Features: batching' 'http://127.0.0.1:8000/events?protocol=tasks'``.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ssehub import EventSourceResponse, NegotiationError, ServerSentEvent
from ssehub.protocols import (
    HEALTH_PROTOCOL,
    TASK_PROTOCOL,
    BatchPolicy,
    HealthCheck,
    HealthMonitor,
    HealthSubscription,
    Negotiated,
    Negotiator,
    ProgressBoard,
    ProgressReporter,
    ProgressSubscription,
    Thresholds,
    batched,
    negotiate_request,
    negotiation_error_response,
)

__all__ = ["app", "create_app", "main"]

negotiator = Negotiator([TASK_PROTOCOL, HEALTH_PROTOCOL], default="tasks")


async def simulate_tasks(board: ProgressBoard, tick: float, parallel: int = 3) -> None:
    """Run batches of fake jobs forever, each reporting progress every ``tick`` seconds."""

    async def job(reporter: ProgressReporter) -> None:
        for percent in range(5, 101, 5):
            await anyio.sleep(tick)
            reporter.update(percent, f"{percent}% done")

    for round_number in itertools.count(1):
        async with anyio.create_task_group() as tg:
            for n in range(parallel):
                reporter = board.create(f"job-{round_number}-{n}", "queued")
                tg.start_soon(lambda r=reporter: board.run(job, reporter=r))


def simulated_latency() -> Any:
    """A probe whose value walks through healthy, warning and critical, then recovers."""
    values = itertools.cycle([20.0, 35.0, 180.0, 650.0, 40.0])

    async def probe() -> float:
        await anyio.lowlevel.checkpoint()
        return next(values)

    return probe


def create_app(*, tick: float = 0.05, health_interval: float = 2.0) -> Starlette:
    """Build the application.

    Args:
        tick: seconds between two progress updates of a simulated job.
        health_interval: seconds between two health rounds.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        board = ProgressBoard(keep_finished=30)
        checks = [
            HealthCheck("database", simulated_latency(), Thresholds(100, 500), unit="ms"),
            HealthCheck("queue", simulated_latency(), Thresholds(200, 800), unit="ms"),
        ]
        async with HealthMonitor(checks, interval=health_interval) as monitor:
            async with anyio.create_task_group() as tg:
                tg.start_soon(simulate_tasks, board, tick)
                yield {"board": board, "monitor": monitor}
                tg.cancel_scope.cancel()
            board.close()

    async def events(request: Request) -> Response:
        try:
            session = negotiate_request(negotiator, request)
        except NegotiationError as exc:
            return negotiation_error_response(exc, request)
        return EventSourceResponse(stream(request, session))

    async def stream(request: Request, session: Negotiated) -> AsyncIterator[ServerSentEvent]:
        yield session.handshake_event()
        # Only clients that enabled "batching" get batches; only batchable kinds are grouped.
        policy = BatchPolicy(kinds=session.batchable_kinds()) if session.batching else None
        if session.protocol is TASK_PROTOCOL:
            tasks = request.state.board.subscribe()
            async for event in batched(tasks, policy, encode=ProgressSubscription.encode):
                yield event
        else:
            health = request.state.monitor.subscribe()
            async for event in batched(health, policy, encode=HealthSubscription.encode):
                yield event

    return Starlette(routes=[Route("/events", events)], lifespan=lifespan)


app = create_app()


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub custom-protocols example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
