"""The real hub (``ssehub.hub.create_app``) under uvicorn on 127.0.0.1, in a background thread.

Stopping it drains the hub as ``ssehub serve`` does (every open stream ends cleanly, so clients
see a hub restart as a normal end of stream, then refused connections).
``HubServer.stream_opened`` tells a test that a subscriber's ``GET /events`` has sent its
response headers: the hub registers the subscription before that, so an event published
afterwards reaches the subscriber. Tests wait on it instead of sleeping.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import uvicorn

from ssehub.hub import HubSettings, create_app

__all__ = ["HubServer"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HubServer:
    """A hub on ``port`` (0: a free one); ``start()`` then ``stop()``."""

    def __init__(self, port: int = 0, settings: HubSettings | None = None) -> None:
        self._app = create_app(settings)
        self._opened = threading.Semaphore(0)
        self.authorizations: list[tuple[str, bytes | None]] = []
        """``(path, Authorization header)`` of every request, in order."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        # Listening before uvicorn runs: early connections wait in the backlog.
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self,
            lifespan="on",
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        hub = self._app.state.hub

        class DrainingServer(uvicorn.Server):
            """Like ``ssehub serve``: on shutdown stop accepting, then end every stream."""

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                for server in self.servers:
                    server.close()
                hub.drain()
                await super().shutdown(sockets=sockets)

        self._server = DrainingServer(config)
        self._thread = threading.Thread(target=self._run, name="hub-server", daemon=True)

    def _run(self) -> None:
        anyio.run(self._server.serve, [self._sock], backend="asyncio")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.authorizations.append((scope["path"], headers.get(b"authorization")))
        if scope["type"] != "http" or scope["path"] != "/events":
            await self._app(scope, receive, send)
            return

        async def watched_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start" and message["status"] == 200:
                self._opened.release()

        await self._app(scope, receive, watched_send)

    def stream_opened(self, timeout: float = 10.0) -> None:
        """Block until one more event stream has opened (fails the test after ``timeout``)."""
        assert self._opened.acquire(timeout=timeout), "no event stream opened"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()
        assert not self._thread.is_alive(), "the hub did not stop"
