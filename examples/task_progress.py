"""Task progress for a long job: start it with a POST, watch it over SSE.

* ``POST /tasks?steps=20&delay=0.5`` starts a job and answers ``202`` with its id and stream URL.
* ``GET /tasks/{id}/events`` streams ``task.progress`` events: the current state first (so a
  late or reconnecting watcher starts from the present), then each change until the job ends.
  The event id is the board's sequence number. When the stream ends, a browser reconnects with
  ``Last-Event-ID``; if it has already seen the final state it gets ``204 No Content``, which
  tells ``EventSource`` to stop for good (WHATWG HTML §9.2.1).
* ``GET /tasks/{id}`` returns the current state as JSON.

Jobs run in a task group owned by the application's lifespan, so they are cancelled (and marked
failed) on shutdown; nothing is fire-and-forget.

Run it: ``uv run python examples/task_progress.py``, then
``curl -X POST 'http://127.0.0.1:8000/tasks?steps=10'`` and
``curl -N http://127.0.0.1:8000/tasks/<id>/events``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import EventSourceResponse, ServerSentEvent
from ssehub.protocols import ProgressBoard, ProgressReporter, ProgressSubscription

__all__ = ["app", "main"]

EVENT_ID = re.compile(r"[0-9]{1,18}")  # a board sequence number sent back as Last-Event-ID


def make_job(steps: int, delay: float, fail_at: int | None) -> Any:
    """A stand-in for real work: ``steps`` steps of ``delay`` seconds each."""

    async def job(reporter: ProgressReporter) -> None:
        for step in range(1, steps + 1):
            await anyio.sleep(delay)
            if step == fail_at:
                raise RuntimeError(f"step {step} failed")
            reporter.update(100 * step / steps, f"step {step}/{steps}")

    return job


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    board = ProgressBoard()
    async with anyio.create_task_group() as jobs:
        yield {"board": board, "jobs": jobs}
        jobs.cancel_scope.cancel()  # running jobs are marked failed ("cancelled")
    board.close()  # then every open stream ends once it has sent the final states


def _number(request: Request, name: str, default: str, low: float, high: float) -> float:
    value = float(request.query_params.get(name, default))
    if not low <= value <= high:
        raise ValueError(name)
    return value


async def start_task(request: Request) -> Response:
    try:
        steps = int(_number(request, "steps", "20", 1, 1000))
        delay = _number(request, "delay", "0.5", 0, 60)
        fail_at = int(_number(request, "fail_at", "0", 0, 1000)) or None
    except ValueError:
        return JSONResponse(
            {"error": "steps: 1..1000, delay: 0..60 seconds, fail_at: 0..1000"}, status_code=400
        )
    board: ProgressBoard = request.state.board
    reporter = board.create(message="queued")
    request.state.jobs.start_soon(
        lambda: board.run(make_job(steps, delay, fail_at), reporter=reporter)
    )
    return JSONResponse(
        {"task_id": reporter.task_id, "events": f"/tasks/{reporter.task_id}/events"},
        status_code=202,
    )


def _state_or_404(request: Request) -> Any:
    try:
        return request.state.board.get(request.path_params["task_id"])
    except KeyError:
        return None


async def task_state(request: Request) -> Response:
    state = _state_or_404(request)
    if state is None:
        return JSONResponse({"error": "unknown task"}, status_code=404)
    return JSONResponse({**dataclasses.asdict(state), "state": state.state.value})


async def task_events(request: Request) -> Response:
    state = _state_or_404(request)
    if state is None:
        return JSONResponse({"error": "unknown task"}, status_code=404)
    last_event_id = request.headers.get("last-event-id", "")
    # ASCII digits only: str.isdigit() accepts "²" (header byte 0xB2), which int() refuses.
    seen = int(last_event_id) if EVENT_ID.fullmatch(last_event_id) else None
    if state.state.terminal and seen is not None and seen >= state.seq:
        return Response(status_code=204)  # already seen the end: stop the browser reconnecting
    # A reconnecting watcher gets only what changed after the id it sent.
    subscription = request.state.board.subscribe(state.task_id, after=seen or 0)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for progress in subscription:
            yield ProgressSubscription.encode(progress)

    return EventSourceResponse(stream())


app = Starlette(
    routes=[
        Route("/tasks", start_task, methods=["POST"]),
        Route("/tasks/{task_id}", task_state),
        Route("/tasks/{task_id}/events", task_events),
    ],
    lifespan=lifespan,
)


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub task-progress example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
