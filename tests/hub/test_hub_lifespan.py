"""The hub's lifespan as a server drives it: why it could not start, in one line.

The lifespan is run by scripted ASGI ``receive``/``send``, as uvicorn, hypercorn and granian run
it: ``lifespan.startup`` in, ``lifespan.startup.complete`` or ``lifespan.startup.failed`` out.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from ssehub import BackendUnavailable
from ssehub.hub import HubSettings, create_app
from ssehub.hub._dispatch import HubApp

pytestmark = pytest.mark.anyio


async def start(app: Starlette) -> tuple[list[Message], BaseException | None]:
    """Run the lifespan's startup; return what the app sent and what it raised."""
    sent: list[Message] = []
    incoming = [{"type": "lifespan.startup"}]

    async def receive() -> Message:
        if incoming:
            return incoming.pop()
        return {"type": "lifespan.shutdown"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with anyio.fail_after(10):
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            return sent, exc
    return sent, None


def failing(error: BaseException) -> HubApp:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise error
        yield  # pragma: no cover - never reached

    return HubApp(events=None, policies=None, lifespan=lifespan)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py's client needs asyncio
async def test_redis_down_is_one_line_not_a_traceback() -> None:
    pytest.importorskip("redis", reason="the redis extra is not installed")
    app = create_app(HubSettings(broker=f"redis://127.0.0.1:{closed_port()}/0"))
    sent, raised = await start(app)
    assert isinstance(raised, BackendUnavailable)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    message = sent[0]["message"]
    assert message.startswith("the hub could not start: BackendUnavailable: Redis is unavailable")
    assert "Traceback" not in message
    assert "\n" not in message


async def test_an_os_error_is_one_line_too() -> None:
    sent, raised = await start(failing(OSError(98, "Address already in use")))
    assert isinstance(raised, OSError)
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "the hub could not start: OSError: [Errno 98] Address already in use "
            "(the traceback: ssehub serve --log-level debug, or DEBUG for the ssehub.hub logger)",
        }
    ]


async def test_a_bug_keeps_its_traceback() -> None:
    sent, raised = await start(failing(RuntimeError("a bug")))
    assert isinstance(raised, RuntimeError)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: a bug" in sent[0]["message"]


async def test_debug_logging_keeps_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ssehub.hub")
    sent, _ = await start(failing(OSError(98, "Address already in use")))
    assert sent[0]["message"].startswith("Traceback (most recent call last):")


async def test_a_clean_start_and_shutdown_pass_through() -> None:
    sent, raised = await start(create_app(HubSettings()))
    assert raised is None
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_an_ingest_socket_in_use_is_one_line(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Unix socket paths are limited to ~107 bytes: a short directory of our own.
    path = f"/tmp/ssehub-lifespan-{os.getpid()}.sock"
    owner = socket.socket(socket.AF_UNIX)
    try:
        owner.bind(path)
        owner.listen()  # a live process serves this path
        sent, raised = await start(create_app(HubSettings(socket=path)))
    finally:
        owner.close()
        os.unlink(path)
    assert isinstance(raised, OSError)  # the bare error, not a task group's ExceptionGroup
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith(
        f"the hub could not start: OSError: [Errno 98] another process is listening on the "
        f"ingest socket {path}"
    )
