"""Watching for the client's disconnect: the one background task every stream has.

Plain ASGI tells an app that its client left only through ``receive()`` returning
``http.disconnect``, so every stream needs something waiting there while it sends. Under asyncio
that is one bare task, created on the loop and cancelled when the stream ends: an anyio task
group with ``start_soon`` would add a cancel scope, an event and a wrapper per task (about
3 KiB), multiplied by every idle connection of a hub. The task never outlives its stream by
more than one loop iteration (it is cancelled in :meth:`DisconnectWatch.__aexit__`), and it
never ends with an exception (``_listen`` handles every one), so nothing is left unretrieved
and it needs no done callback (which would keep a callback entry and a context copy per
stream). Under any other async library (trio) an anyio task group runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

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

    __slots__ = ("_error", "_group", "_on_disconnect", "_receive", "_task")

    def __init__(
        self, receive: Receive, on_disconnect: Callable[[Message], Awaitable[None]]
    ) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._task: Any = None
        self._group: anyio.abc.TaskGroup | None = None
        self._error: Exception | None = None

    async def _listen(self) -> None:
        receive = self._receive
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
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
            group = self._group = anyio.create_task_group()
            await group.__aenter__()
            group.start_soon(self._listen)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        else:
            group = self._group
            assert group is not None
            self._group = None
            group.cancel_scope.cancel()
            await group.__aexit__(exc_type, exc, tb)
        error, self._error = self._error, None
        if error is not None and exc_type is None:
            raise error
        return None
