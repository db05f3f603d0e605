"""A worker pool: jobs posted over HTTP are processed by callback listeners in worker threads.

``POST /jobs`` queues jobs on a channel; each job is dispatched (round-robin) to one of the pool's
callback listeners, whose callback runs in a bounded thread pool and publishes the result to the
``results`` topic, streamed by ``GET /results``. A failing job is logged and counted, and the
pool carries on. The channel's ``block`` policy gives back-pressure: when every worker is busy
and their queues are full, ``POST /jobs`` waits instead of queueing without limit.

Run it: ``uv run python examples/worker_pool.py``, then in one terminal
``curl -N http://127.0.0.1:8000/results`` and in another
``curl -X POST http://127.0.0.1:8000/jobs -H 'Content-Type: application/json'
-d '{"jobs": [{"text": "hello", "rounds": 20000}, {"text": "world"}]}'``;
``curl http://127.0.0.1:8000/stats`` shows what each worker did.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import Broker, Channel, EventSourceResponse, EventValidationError, Message, WorkerPool

__all__ = ["app", "create_app", "main", "work"]

WORKERS = 3
MAX_JOBS = 100  # per request
MAX_ROUNDS = 1_000_000


def work(message: Message, broker: Broker) -> None:
    """Process one job in a worker thread: hash ``text`` ``rounds`` times, publish the digest.

    Raises:
        ValueError: the job is malformed (the pool logs and counts it, then carries on).
    """
    job = message.payload
    text, rounds = job.get("text"), job.get("rounds", 1000)
    if not isinstance(text, str) or not isinstance(rounds, int) or not 0 < rounds <= MAX_ROUNDS:
        raise ValueError(f"bad job {job!r}")
    digest = text.encode()
    for _ in range(rounds):  # CPU work: hashlib releases the GIL for large inputs only
        digest = hashlib.sha256(digest).digest()
    result = {"job": job.get("id"), "text": text, "rounds": rounds, "sha256": digest.hex()}
    # From a worker thread: publish_threadsafe hands the event to the event loop and waits.
    broker.publish_threadsafe("results", result, event="result")


def create_app(*, workers: int = WORKERS) -> Starlette:
    """Build the app; its lifespan runs the broker, the channel and the worker pool."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # queue_size=2 and block: at most 2 jobs wait per worker; then POST /jobs waits.
        async with (
            Broker() as broker,
            Channel("jobs", queue_size=2, overflow="block") as channel,
            WorkerPool(max_workers=workers) as pool,
        ):
            handles = [
                pool.attach(channel, lambda m: work(m, broker), ordered=True, id=f"worker-{n}")
                for n in range(1, workers + 1)
            ]
            state.update(
                broker=broker, channel=channel, pool=pool, handles=handles, ids=itertools.count(1)
            )
            yield
            state.clear()

    async def post_jobs(request: Request) -> Response:
        try:
            jobs = json.loads(await request.body())["jobs"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: deep nesting
            return JSONResponse({"error": 'expected {"jobs": [{...}, ...]}'}, status_code=400)
        if not isinstance(jobs, list) or not 0 < len(jobs) <= MAX_JOBS:
            return JSONResponse({"error": f"jobs: a list of 1-{MAX_JOBS}"}, status_code=400)
        if not all(isinstance(job, dict) for job in jobs):
            return JSONResponse({"error": "each job must be an object"}, status_code=400)
        channel: Channel = state["channel"]
        handles = state["handles"]
        messages = [Message("job", {**job, "id": next(state["ids"])}) for job in jobs]
        try:
            for message in messages:
                # Checked before anything is queued (all the jobs or none): JSON's "\ud800"
                # escape parses, but a lone surrogate is not text an event can carry.
                message.encode()
        except EventValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        queued = []
        for message in messages:
            job_id = message.payload["id"]
            worker = handles[job_id % len(handles)].listener.id  # round-robin
            await channel.dispatch(worker, message)
            queued.append({"job": job_id, "worker": worker})
        return JSONResponse({"queued": queued})

    async def results(request: Request) -> Response:
        broker: Broker = state["broker"]
        last_event_id = request.headers.get("last-event-id")
        subscription = broker.subscribe("results", last_event_id)
        return EventSourceResponse(subscription, ping=15)

    async def stats(request: Request) -> Response:
        pool: WorkerPool = state["pool"]
        return JSONResponse(
            {
                "total": pool.statistics()._asdict(),
                "workers": {h.listener.id: h.statistics()._asdict() for h in state["handles"]},
            }
        )

    app = Starlette(
        routes=[
            Route("/jobs", post_jobs, methods=["POST"]),
            Route("/results", results),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )
    app.state.workers = state  # the running broker, channel, pool and handles (for tests)
    return app


app = create_app()


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub worker pool example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
