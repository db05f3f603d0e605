"""Custom protocols: task monitoring and health monitoring, negotiated per connection.

``GET /events?protocol=tasks`` or ``?protocol=health`` (or the ``X-Protocol`` header) picks the
protocol. The client may also state versions and features, with headers (``X-Protocol-Version``,
``X-Client-Features: batching``) or, from a browser, query parameters (``protocol_version``,
``features=batching``). The stream starts with a ``protocol.handshake`` event; then

* ``tasks`` streams ``task.progress`` for a few simulated jobs updating many times a second.
  With ``batching`` enabled, updates are grouped into ``protocol.batch`` events (count, bytes and
  50 ms bounds); without it they come one by one. A new watcher gets every task's current state
  first. A reconnecting watcher sends ``Last-Event-ID`` (the event ids are the board's sequence
  numbers) and gets only what changed after it. Every item of a batch carries its own id, so a
  client that stopped in the middle of a batch sends the id of the last item it handled and gets
  the rest of that batch again: nothing missing, nothing twice.
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
import re
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import aclosing, asynccontextmanager
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
SEQUENCE = re.compile(r"[0-9]{1,18}")  # an id this server sent: ASCII digits (not str.isdigit)


def resume_point(request: Request) -> int:
    """The board sequence number a reconnecting client has handled (0 for a new client).

    A malformed ``Last-Event-ID`` is treated as absent: progress is state, so starting again
    from the current states is always correct, while a 400 would stop a browser for good.
    """
    value = request.headers.get("last-event-id", "")
    return int(value) if SEQUENCE.fullmatch(value) else 0


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


def create_app(
    *,
    tick: float = 0.05,
    health_interval: float = 2.0,
    simulate: bool = True,
    make_policy: Callable[[Collection[str]], BatchPolicy] | None = None,
) -> Starlette:
    """Build the application.

    Args:
        tick: seconds between two progress updates of a simulated job.
        health_interval: seconds between two health rounds.
        simulate: run the simulated jobs; ``False`` leaves the board (``state["board"]`` in
            the lifespan state) to the caller, for tests that need a known sequence.
        make_policy: builds the batching policy of a connection from its batchable kinds
            (default: ``BatchPolicy(kinds=kinds)``, the 100 events, 64 KiB, 50 ms bounds).
    """
    policy_for = make_policy or (lambda kinds: BatchPolicy(kinds=kinds))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        board = ProgressBoard(keep_finished=30)
        checks = [
            HealthCheck("database", simulated_latency(), Thresholds(100, 500), unit="ms"),
            HealthCheck("queue", simulated_latency(), Thresholds(200, 800), unit="ms"),
        ]
        async with HealthMonitor(checks, interval=health_interval) as monitor:
            async with anyio.create_task_group() as tg:
                if simulate:
                    tg.start_soon(simulate_tasks, board, tick)
                yield {"board": board, "monitor": monitor}
                tg.cancel_scope.cancel()
            board.close()

    async def events(request: Request) -> Response:
        try:
            session = negotiate_request(negotiator, request)
        except NegotiationError as exc:
            return negotiation_error_response(exc, request)
        # Read before answering, so the generator has nothing left to refuse.
        return EventSourceResponse(stream(request, session, resume_point(request)))

    async def stream(
        request: Request, session: Negotiated, after: int
    ) -> AsyncIterator[ServerSentEvent]:
        # The handshake has no id: sent again on every reconnection, it never moves the
        # client's Last-Event-ID.
        yield session.handshake_event()
        # Only clients that enabled "batching" get batches; only batchable kinds are grouped.
        policy = policy_for(session.batchable_kinds()) if session.batching else None
        if session.protocol is TASK_PROTOCOL:
            # Ids are board sequence numbers: resuming is starting the cursor at the client's
            # Last-Event-ID, whether that id ended a batch or sat in the middle of one.
            tasks = request.state.board.subscribe(after=after)
            events = batched(tasks, policy, encode=ProgressSubscription.encode)
        else:
            health = request.state.monitor.subscribe()
            events = batched(health, policy, encode=HealthSubscription.encode)
        # aclosing: when the client leaves, the inner generator is closed here, at once, not
        # by the garbage collector (which trio refuses to do for async generators).
        async with aclosing(events):
            async for event in events:
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
