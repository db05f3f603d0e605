"""examples/task_progress.py: a long job's lifecycle over SSE, with 204 after the end."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from ssehub.protocols import TASK_PROTOCOL, TaskState
from ssehub.testing import http_scope, stream_asgi

pytestmark = pytest.mark.anyio


async def start(app: Any, state: dict[str, Any], query: str) -> str:
    scope = http_scope("/tasks", method="POST", query_string=query, state=dict(state))
    async with stream_asgi(app, scope=scope) as response:
        await response.start()
        assert response.status_code == 202
        body = json.loads(await response.read_all())
    assert body["events"] == f"/tasks/{body['task_id']}/events"
    return str(body["task_id"])


async def test_watch_a_job_to_completion_then_204_on_reconnect(
    example: Any, run_lifespan: Any
) -> None:
    app = example("task_progress").app
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            task_id = await start(app, state, "steps=5&delay=0")
            scope = http_scope(f"/tasks/{task_id}/events", state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                events = await stream.events().rest()
            states = [TASK_PROTOCOL.decode(e).payload for e in events]
            # Conflated: states may be skipped, never reordered; the final state is always sent.
            assert [s.seq for s in states] == sorted({s.seq for s in states})
            percents = [s.percent or 0 for s in states]
            assert percents == sorted(percents)
            assert states[-1].state is TaskState.COMPLETED
            assert states[-1].percent == 100.0
            final_id = events[-1].id

            headers = {"last-event-id": final_id}
            scope = http_scope(f"/tasks/{task_id}/events", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as again:
                await again.start()
                assert again.status_code == 204

            # "\u00b2" (header byte 0xB2) passes str.isdigit() but not int(): not an id the
            # server sent, so the watcher is answered like a new one (the final state again).
            headers = {"last-event-id": "\u00b2"}
            scope = http_scope(f"/tasks/{task_id}/events", headers=headers, state=dict(state))
            async with stream_asgi(app, scope=scope) as odd:
                [replayed] = await odd.events().rest()
                assert odd.status_code == 200
            assert TASK_PROTOCOL.decode(replayed).payload == states[-1]

            scope = http_scope(f"/tasks/{task_id}", state=dict(state))
            async with stream_asgi(app, scope=scope) as snapshot:
                await snapshot.start()
                assert json.loads(await snapshot.read_all())["state"] == "completed"


async def test_late_watcher_gets_the_current_state_first(example: Any, run_lifespan: Any) -> None:
    app = example("task_progress").app
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            # A job that will not finish during the test: the watcher joins mid-way.
            task_id = await start(app, state, "steps=3&delay=30")
            scope = http_scope(f"/tasks/{task_id}/events", state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                first = TASK_PROTOCOL.decode(await stream.events().next_event()).payload
                assert first.task_id == task_id
                assert first.state in (TaskState.PENDING, TaskState.RUNNING)
        # Leaving the lifespan cancelled the job; it is marked failed, not left running.
        assert state["board"].get(task_id).error == "cancelled"


async def test_failed_job_reports_the_error(example: Any, run_lifespan: Any) -> None:
    app = example("task_progress").app
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            task_id = await start(app, state, "steps=5&delay=0&fail_at=3")
            scope = http_scope(f"/tasks/{task_id}/events", state=dict(state))
            async with stream_asgi(app, scope=scope) as stream:
                events = await stream.events().rest()
    final = TASK_PROTOCOL.decode(events[-1]).payload
    assert final.state is TaskState.FAILED
    assert final.error == "RuntimeError: step 3 failed"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/tasks/nope/events", 404), ("GET", "/tasks/nope", 404), ("POST", "/tasks", 400)],
)
async def test_errors(example: Any, run_lifespan: Any, method: str, path: str, status: int) -> None:
    app = example("task_progress").app
    with anyio.fail_after(10):
        async with run_lifespan(app) as state:
            query = "steps=0" if method == "POST" else ""
            scope = http_scope(path, method=method, query_string=query, state=dict(state))
            async with stream_asgi(app, scope=scope) as response:
                await response.start()
                assert response.status_code == status
                assert "error" in json.loads(await response.read_all())
