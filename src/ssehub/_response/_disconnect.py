"""Watching for the client's disconnect: the one background task every stream has.

Plain ASGI reports a disconnect only through ``receive()``. Under asyncio the watch is one bare
task (``loop.create_task``): an anyio task group would add a cancel scope, an event and a
wrapper per idle connection (about 3 KiB). It is cancelled when the stream ends and never ends
with an exception (``_listen`` handles every one), so it needs no done callback (a callback
entry and a context copy per stream). Under trio an anyio task group runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._timers import running_loop

if TYPE_CHECKING:
    from starlette.types import Message, Receive

__all__ = ["DisconnectWatch"]

logger = logging.getLogger("ssehub.response")


class DisconnectWatch:
    """An async context manager: while inside, ``receive()`` is awaited in the background,
    and ``on_disconnect`` is awaited with the ``http.disconnect`` message when it comes.

    Args:
        receive: the ASGI ``receive`` of the request.
        on_disconnect: called once when the client leaves; also called (with a synthetic
            ``http.disconnect``) if ``receive`` itself fails, since the stream cannot tell
            any more whether its client is there. An exception it raises is raised when the
            context is left (unless another one is leaving it already).
    """

    __slots__ = ("_error", "_on_disconnect", "_receive", "_task")

    def __init__(
        self, receive: Receive, on_disconnect: Callable[[Message], Awaitable[None]]
    ) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._task: Any = None  # the asyncio task, or the task group that runs it (trio)
        self._error: Exception | None = None

    async def _listen(self) -> None:
        receive = self._receive
        try:
            while True:
                message = await receive()
                if message["type"] in ("http.disconnect", "websocket.disconnect"):
                    break  # the second: a client leaving a websocket denial response
        except Exception:
            logger.exception("receive() failed while streaming; ending the stream")
            message = {"type": "http.disconnect"}
        try:
            await self._on_disconnect(message)
        except Exception as exc:  # noqa: BLE001 - raised again by __aexit__, in the stream task
            self._error = exc

    async def __aenter__(self) -> DisconnectWatch:
        loop = running_loop()
        if loop is not None:
            self._task = loop.create_task(self._listen())
        else:
            group = self._task = anyio.create_task_group()
            await group.__aenter__()
            group.start_soon(self._listen)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        task, self._task = self._task, None
        if isinstance(task, anyio.abc.TaskGroup):
            task.cancel_scope.cancel()
            await task.__aexit__(*exc_info)
        else:
            task.cancel()
        error, self._error = self._error, None
        if error is not None and exc_info[0] is None:
            raise error
