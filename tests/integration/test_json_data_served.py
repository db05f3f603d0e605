"""Structured data under a real uvicorn: JSON on the wire, or a loud failure (issue 19 item 3).

``tests/integration/json_data_app.py`` is served by the command a user types (``uvicorn
module:app``, with each of uvicorn's HTTP implementations) and read over a raw socket, so a clean
end of the body (the chunked terminator) is told apart from a connection the server cut.

* ``/json``: a dict's ``data`` that is a dict, a list, a dataclass or a pydantic model arrives
  as JSON, and the body ends cleanly.
* ``/unserialisable``: one event, an idle stream, then data with no JSON form. The client must
  not see a clean end (a browser would take it as a normal end and reconnect into the same
  error forever): the server cuts the connection, and its log names the error and the route.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from .server_kit import RawStream, ServerProcess, uvicorn_app

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
APP = "tests.integration.json_data_app:app"


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with uvicorn_app(APP, "--http", request.param) as process:
        yield process


def stop(server: ServerProcess) -> str:
    """Stop the server and return its whole log (complete once its output pipes closed)."""
    server.interrupt()
    assert server.wait_exit(TIMEOUT) is not None, server.output
    server.close()
    return server.stderr


def test_structured_data_is_json_and_unserialisable_data_fails_loudly(
    server: ServerProcess,
) -> None:
    stream = RawStream(server.port, "/json", timeout=TIMEOUT)
    try:
        end = stream.read_to_end(time.monotonic() + TIMEOUT)
    finally:
        stream.close()
    assert end.how == "terminator", end
    assert [(e.event, e.data, e.id) for e in stream.events] == [
        ("dict", '{"a":1}', "1"),
        ("list", '[1,"two"]', "2"),
        ("dataclass", '{"x":3,"y":4}', "3"),
        ("model", '{"name":"ann","tags":["x"]}', "4"),
    ]

    stream = RawStream(server.port, "/unserialisable", timeout=TIMEOUT)
    try:
        assert [e.data for e in stream.read_events(1)] == ["first"]
        # Only now does the generator go on: the stream is idle, every byte so far sent.
        released = httpx.get(
            f"http://127.0.0.1:{server.port}/release", timeout=TIMEOUT, trust_env=False
        )
        assert released.status_code == 200
        end = stream.read_to_end(time.monotonic() + TIMEOUT)
    finally:
        stream.close()
    assert end.how in {"eof", "reset"}, f"the body must not end cleanly: {end}"
    assert [e.data for e in stream.events] == ["first"]

    log = stop(server)
    assert "EventValidationError" in log, log
    assert "Object of type NoJSON is not JSON serializable" in log, log
    # The route is named where the error is logged (a note on the exception, Python 3.11+).
    if sys.version_info >= (3, 11):
        assert "in the event stream of GET /unserialisable" in log, log
