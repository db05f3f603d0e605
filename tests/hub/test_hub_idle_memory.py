"""What idle hub streams cost, guarded: memory per stream and tasks per stream (issue 17 item 8).

The hub's promise is that an idle connection costs almost nothing. These tests open a thousand
idle ``GET /events`` streams on the hub app (called directly, as a server would) and measure,
with tracemalloc, the Python memory they hold, and count the tasks they keep. The budget is
the figure measured when the streaming core was rewritten plus about 5 %: a change that makes
every idle stream heavier (a task, a cancel scope or a frame per stream) fails here, not in a
benchmark nobody runs. uvicorn's own connection state (about 8 KiB, outside this process's
Python heap accounting here) is not included; ``benchmarks/bench_hub_idle.py`` measures the
whole server's RSS.

Each stream here also carries what the test itself adds per request: the ASGI scope, the task
that calls the app (a server's task) and its ``receive`` waiting forever (a cancel scope).
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import anyio
import pytest

from ssehub.hub import HubSettings, create_app
from ssehub.testing import http_scope

pytestmark = pytest.mark.anyio

STREAMS = 1000
BUDGET_BYTES = 11_100  # measured 10 592 on CPython 3.11, asyncio, default settings (17 490 before
# the /events dispatcher and the flatter stream, issue 17)
TASKS_PER_STREAM = 2  # the task calling the app, and the stream's disconnect watch


@pytest.fixture
def anyio_backend() -> str:
    # The budget is for asyncio, where hubs run (uvicorn); trio's costs differ.
    return "asyncio"


MERCURE_BUDGET_BYTES = 11_900  # measured 11 363 (a Mercure subscriber, dispatched the same way)


@pytest.mark.parametrize(
    ("path", "budget"),
    [("/events", BUDGET_BYTES), ("/.well-known/mercure", MERCURE_BUDGET_BYTES)],
    ids=["events", "mercure"],
)
async def test_an_idle_hub_stream_stays_within_its_memory_and_task_budget(
    path: str, budget: int
) -> None:
    settings = HubSettings(
        max_connections=10 * STREAMS,
        max_connections_per_address=10 * STREAMS,
        mercure=True,
        mercure_jwt_key="k" * 32,
        mercure_anonymous=True,
    )
    app = create_app(settings)
    opened = 0
    all_open = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        nonlocal opened
        if message["type"] == "http.response.body" and message["body"].startswith(b": ok"):
            opened += 1
            if opened == target:
                all_open.set()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    def scope() -> dict[str, Any]:
        return http_scope(path, query_string=b"topic=idle")

    async with app.router.lifespan_context(app), anyio.create_task_group() as group:
        # Warm up: first-use caches (regexes, header tables, the loop's alarm clock).
        target = 50
        for _ in range(target):
            group.start_soon(app, scope(), receive, send)
        with anyio.fail_after(30):
            await all_open.wait()
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        tasks_before = len(anyio.get_running_tasks())
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            all_open = anyio.Event()
            target = 50 + STREAMS
            for _ in range(STREAMS):
                group.start_soon(app, scope(), receive, send)
            with anyio.fail_after(60):
                await all_open.wait()
            await anyio.wait_all_tasks_blocked()
            gc.collect()
            per_stream = (tracemalloc.get_traced_memory()[0] - before) / STREAMS
        finally:
            tracemalloc.stop()
        tasks_per_stream = (len(anyio.get_running_tasks()) - tasks_before) / STREAMS
        group.cancel_scope.cancel()
    assert tasks_per_stream == TASKS_PER_STREAM
    assert per_stream <= budget, f"{per_stream:.0f} bytes per idle stream"
