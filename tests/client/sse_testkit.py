"""A scripted SSE server on a real loopback port, and a clock that records reconnect delays.

The server is a raw ASGI app under uvicorn, running in a background thread with its own event
loop. Each test scripts the replies of one path: every connection to that path takes the next
:class:`Reply` (status, headers, then body steps: bytes to send, gates to wait for, hang until
the client goes away); once a path's replies run out it answers ``204``, which stops a
conformant client, so every test ends deterministically. Every request is recorded with its raw
header bytes.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

__all__ = [
    "HANG",
    "Gate",
    "Pause",
    "RecordingClock",
    "Reply",
    "ScriptServer",
    "json_reply",
    "refused_url",
    "sse",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SSE = [(b"content-type", b"text/event-stream")]


class Gate:
    """A thread-safe switch: the server waits at it until the test opens it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def open(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await anyio.to_thread.run_sync(self._event.wait, abandon_on_cancel=True)


@dataclass(frozen=True)
class Pause:
    """Sleep on the server for ``seconds`` (used only to pace heartbeats in real time)."""

    seconds: float


class _Hang:
    """Send nothing more and wait until the client disconnects."""


HANG = _Hang()

Step = bytes | Gate | Pause | _Hang


@dataclass
class Reply:
    """One connection's reply."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: list(SSE))
    steps: list[Step] = field(default_factory=list)
    before_headers: Gate | None = None


def sse(*steps: Step) -> Reply:
    """A 200 ``text/event-stream`` reply with these body steps."""
    return Reply(steps=list(steps))


def json_reply(status: int, body: bytes) -> Reply:
    """A JSON reply (for the hub client tests)."""
    return Reply(status=status, headers=[(b"content-type", b"application/json")], steps=[body])


@dataclass(frozen=True)
class Recorded:
    """A request as the server saw it."""

    path: str
    query: bytes
    headers: dict[bytes, bytes]
    method: str = "GET"
    body: bytes = b""


class ScriptServer:
    """The scripted ASGI app, served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._replies: dict[str, collections.deque[Reply]] = {}
        self._requests: dict[str, list[Recorded]] = collections.defaultdict(list)
        self._gates: list[Gate] = []
        self._disconnected: dict[str, int] = collections.defaultdict(int)
        self._paths = itertools.count()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        # Listening before uvicorn starts: connections wait in the backlog, so no test has to
        # wait for the server to be "started".
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="sse-script-server", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------

    def _run(self) -> None:
        anyio.run(self._server.serve, [self._sock], backend="asyncio")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.open()
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        assert not self._thread.is_alive(), "the script server did not stop"

    # -- scripting ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def new_path(self) -> str:
        return f"/s{next(self._paths)}"

    def gate(self) -> Gate:
        gate = Gate()
        with self._lock:
            self._gates.append(gate)
        return gate

    def script(self, path: str, *replies: Reply) -> str:
        """Queue replies for ``path`` and return its full URL."""
        with self._lock:
            self._replies.setdefault(path, collections.deque()).extend(replies)
        return self.url(path)

    def requests(self, path: str) -> list[Recorded]:
        with self._lock:
            return list(self._requests[path])

    def disconnects(self, path: str) -> int:
        with self._lock:
            return self._disconnected[path]

    def wait_requests(self, path: str, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until ``path`` has seen ``count`` requests (thread-safe condition, no polling)."""
        with self._lock:
            ok = self._lock.wait_for(lambda: len(self._requests[path]) >= count, timeout)
            assert ok, f"{path} saw {len(self._requests[path])} requests, expected {count}"
            return list(self._requests[path])

    def wait_disconnects(self, path: str, count: int, timeout: float = 5.0) -> None:
        with self._lock:
            ok = self._lock.wait_for(lambda: self._disconnected[path] >= count, timeout)
            assert ok, f"{path} saw {self._disconnected[path]} disconnects, expected {count}"

    async def await_requests(self, path: str, count: int) -> list[Recorded]:
        return await anyio.to_thread.run_sync(self.wait_requests, path, count)

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        body = b""
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
        headers = {k.lower(): v for k, v in scope["headers"]}
        with self._lock:
            self._requests[path].append(
                Recorded(path, scope["query_string"], headers, scope["method"], body)
            )
            queue = self._replies.get(path)
            reply = queue.popleft() if queue else Reply(status=204, headers=[])
            self._lock.notify_all()
        disconnected = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, receive, disconnected, path)
            try:
                await self._respond(reply, send, disconnected)
            except OSError:
                pass  # the client went away while we were sending
            tg.cancel_scope.cancel()

    async def _watch(self, receive: Receive, disconnected: anyio.Event, path: str) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        with self._lock:
            self._disconnected[path] += 1
            self._lock.notify_all()
        disconnected.set()

    @staticmethod
    async def _respond(reply: Reply, send: Send, disconnected: anyio.Event) -> None:
        if reply.before_headers is not None and not await _race(
            reply.before_headers.wait, disconnected
        ):
            return
        start = {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
        await send(start)
        for step in reply.steps:
            if isinstance(step, bytes):
                await send({"type": "http.response.body", "body": step, "more_body": True})
            elif isinstance(step, Gate):
                if not await _race(step.wait, disconnected):
                    return
            elif isinstance(step, Pause):
                if not await _race(lambda s=step.seconds: anyio.sleep(s), disconnected):
                    return
            else:
                await disconnected.wait()
                return
        if not disconnected.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _race(wait: Callable[[], Awaitable[None]], disconnected: anyio.Event) -> bool:
    """Run ``wait()``; return False if the client disconnected first."""
    finished = False

    async def run() -> None:
        nonlocal finished
        await wait()
        finished = True
        tg.cancel_scope.cancel()

    async def gone() -> None:
        await disconnected.wait()
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(gone)
    return finished


def refused_url() -> tuple[socket.socket, str]:
    """A bound but not listening socket (connections are refused) and its URL; keep the socket
    open while the URL is in use so no other process can take the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/events"


class RecordingClock:
    """A :class:`ssehub._clock.Clock` that records every requested wait and skips it.

    With ``park_after=n`` the n-th wait (and every later one) never returns: the test can then
    close the source while it is waiting. ``parked`` is set when that happens.
    """

    def __init__(self, park_after: int | None = None) -> None:
        self.now = 0.0
        self.delays: list[float] = []
        self.park_after = park_after
        self.parked = anyio.Event()

    def time(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        self.delays.append(deadline - self.now)
        if self.park_after is not None and len(self.delays) >= self.park_after:
            self.parked.set()
            await anyio.sleep_forever()
        self.now = max(self.now, deadline)
        await anyio.lowlevel.checkpoint()
