"""A hub event stream as an ASGI app: :class:`HubStream`.

What ``GET /events`` (and Mercure's subscribe) answers once the subscription is open. Its own
module so that every route module can use it without importing the app (the hub's modules
import in one direction, ``_app`` at the top).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._exceptions import SendTimeoutError
from ..broker import EndReason

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

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
    connection, not an app error. A credential with an expiry ends the stream then: the
    subscription was opened with ``expires_at`` (no task per stream: the broker's deadline task
    ends it, and the response then ends the body cleanly).
    """

    __slots__ = ("_hub", "_lease", "_response", "_subscription")

    def __init__(
        self,
        response: EventSourceResponse,
        subscription: Subscription,
        hub: HubState,
        lease: Lease,
    ) -> None:
        self._response = response
        self._subscription = subscription
        self._hub = hub
        self._lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._response
        subscription = self._subscription
        hub = self._hub
        hub._stream_opened(response, subscription)
        try:
            await response(scope, receive, send)
            if subscription.end_reason is EndReason.EXPIRED:
                logger.info("ended a stream: its token expired")
        except SendTimeoutError:
            logger.info(
                "ended a stream: the client accepted no data for %s s", response.send_timeout
            )
        finally:
            hub._stream_closed(response)
            self._subscription.close()
            self._lease.release()
