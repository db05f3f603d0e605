"""The hub's body lane (scripted ASGI): detached streams run after the stack, with their id."""

from __future__ import annotations

from typing import Any

import pytest

from ssehub._logging import RequestIdMiddleware, current_request_id
from ssehub.hub._lane import BodyLane, lane_of
from ssehub.testing import http_scope

pytestmark = pytest.mark.anyio


async def test_a_detached_stream_runs_after_the_stack_with_the_raw_send_and_request_id() -> None:
    seen: list[Any] = []
    order: list[str] = []

    async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def rest(_scope: Any, _receive: Any, lane_send: Any) -> None:
            order.append("stream")
            seen.append((lane_send, current_request_id()))

        await send({"type": "http.response.start", "status": 200, "headers": []})
        lane = lane_of(scope)
        assert lane is not None
        lane.detached = rest
        lane.on_end(lambda: order.append("end callback"))
        order.append("endpoint returns")

    async def raw_send(message: dict[str, Any]) -> None:
        order.append(message["type"])

    async def receive() -> dict[str, Any]:  # pragma: no cover - never called
        raise AssertionError

    app = BodyLane(RequestIdMiddleware(endpoint))
    scope = http_scope("/events", headers={"x-request-id": "req-42"})
    await app(scope, receive, raw_send)
    assert order == ["http.response.start", "endpoint returns", "stream", "end callback"]
    assert seen == [(raw_send, "req-42")]
    lane = lane_of(scope)
    assert lane is not None
    assert lane.send is raw_send
    assert lane.detached is None  # released once run
    assert [key for key in scope if key.startswith("ssehub.")] == ["ssehub.lane"]
    assert current_request_id() is None  # reset after the stream


async def test_end_callbacks_run_even_when_the_stream_fails() -> None:
    ended: list[bool] = []

    async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def rest(_scope: Any, _receive: Any, _send: Any) -> None:
            raise RuntimeError("boom")

        lane = lane_of(scope)
        assert lane is not None
        lane.detached = rest
        lane.on_end(lambda: ended.append(True))

    async def nothing(*_: Any) -> Any:  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(RuntimeError, match="boom"):
        await BodyLane(endpoint)(http_scope("/events"), nothing, nothing)
    assert ended == [True]


def test_outside_the_lane_a_scope_has_none() -> None:
    assert lane_of(http_scope("/events")) is None
    assert lane_of({**http_scope("/events"), "ssehub.lane": "not a lane"}) is None
