"""A hub event stream as an ASGI app: :class:`HubStream`.

What ``GET /events`` (and Mercure's subscribe) answers once the subscription is open. Its own
module so that every route module can use it without importing the app (the hub's modules
import in one direction, ``_app`` at the top).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .._exceptions import SendTimeoutError
from .._excgroups import collapse_excgroups

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .._clock import Clock
    from ..broker import Subscription
    from ..response import EventSourceResponse
    from ._limits import Lease
    from ._state import HubState

__all__ = ["HubStream"]

logger = logging.getLogger("ssehub.hub")


class HubStream:
    """What ``GET /events`` answers once the subscription is open: an ASGI app that runs the
    event stream and releases everything it holds when it ends (the subscription, the
    connection place, the hub's record of it), however it ends.

    A frozen client ends the stream quietly: a send timeout is the expected fate of a dead
    connection, not an app error. A credential with an expiry ends the stream then (one timer
    task per such stream, on the broker's clock).
    """

    __slots__ = ("_expiry", "_hub", "_lease", "_response", "_subscription")

    def __init__(
        self,
        response: EventSourceResponse,
        subscription: Subscription,
        hub: HubState,
        lease: Lease,
        expiry: tuple[float, Clock] | None,
    ) -> None:
        self._response = response
        self._subscription = subscription
        self._hub = hub
        self._lease = lease
        self._expiry = expiry

    async def _expire(self, deadline: float, clock: Clock) -> None:
        await clock.sleep_until(deadline)
        logger.info("ended a stream: its token expired")
        self._subscription.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._response
        hub = self._hub
        hub._stream_opened(response, self._subscription)
        try:
            if self._expiry is None:
                await response(scope, receive, send)
            else:
                with collapse_excgroups():
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._expire, *self._expiry)
                        await response(scope, receive, send)
                        group.cancel_scope.cancel()
        except SendTimeoutError:
            logger.info(
                "ended a stream: the client accepted no data for %s s", response.send_timeout
            )
        finally:
            hub._stream_closed(response)
            self._subscription.close()
            self._lease.release()
