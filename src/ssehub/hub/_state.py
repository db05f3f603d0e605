"""The running hub behind one app: :class:`HubState` (``app.state.hub``).

Its own module so that the hub's parts (channels, dashboard, metrics, status) can name it
without importing the app that assembles them: the hub's modules import in one direction
only, ``_app`` at the top.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from .._waiter import wait_shielded
from ._channels import HubChannels
from ._errors import HubHTTPError
from ._guard import Guard

if TYPE_CHECKING:
    from ..broker import Broker, Subscription
    from ..response import EventSourceResponse
    from ._settings import HubSettings

__all__ = ["HubState"]


class HubState:
    """The running hub behind one app: settings, broker, uptime, and the draining switch.

    Available as ``app.state.hub``. Servers call :meth:`drain` when shutdown begins.

    Attributes:
        settings: the hub's settings.
        broker: the broker the endpoints use.
        owns_broker: whether the app's lifespan enters and closes :attr:`broker`.
    """

    def __init__(self, settings: HubSettings, broker: Broker, *, owns_broker: bool) -> None:
        self.settings = settings
        self.broker = broker
        self.owns_broker = owns_broker
        self._started = time.monotonic()
        self._draining = False
        # The open event streams: drain() ends each one cleanly (no shutdown watcher task per
        # stream), and closes its subscription.
        self._streams: dict[EventSourceResponse, Subscription] = {}
        self._ended: anyio.Event | None = None  # set when the last stream ends (see close_streams)
        # -- security: authentication, authorization and limits (app.state.hub.guard)
        self.guard = Guard(settings, broker.clock)
        # -- channels: the channel registry and its HTTP listeners (None when switched off)
        self.channels: HubChannels | None = (
            HubChannels(settings, clock=broker.clock) if settings.channels else None
        )

    @property
    def draining(self) -> bool:
        """Whether shutdown has started (``/health`` then answers 503)."""
        return self._draining

    @property
    def uptime(self) -> float:
        """Seconds since the hub started."""
        return time.monotonic() - self._started

    def drain(self) -> None:
        """Begin shutdown: ``/health`` answers 503 and every open stream ends cleanly.

        Idempotent. Call it from the event loop thread (for example from a server's shutdown
        hook), before waiting for connections to close.
        """
        self._draining = True
        if self.channels is not None:
            self.channels.drain()
        for stream, subscription in list(self._streams.items()):
            _drain(stream, subscription)

    def _stream_opened(self, stream: EventSourceResponse, subscription: Subscription) -> None:
        self._streams[stream] = subscription
        if self._draining:
            _drain(stream, subscription)  # the stream sends its headers and ends at once

    def _stream_closed(self, stream: EventSourceResponse) -> None:
        self._streams.pop(stream, None)
        if not self._streams and self._ended is not None:
            self._ended.set()

    async def close_streams(self, timeout: float) -> bool:  # noqa: ASYNC109 - shielded
        """:meth:`drain`, then wait (shielded, at most ``timeout`` seconds) until every open
        stream has sent its end.

        The app's lifespan calls it on shutdown: some servers (granian) run the lifespan's
        shutdown and then stop running the event loop, so a stream still sending its final
        body then would never finish, and the server would wait for it forever.

        Returns:
            Whether every stream ended in time.
        """
        self.drain()
        if self._streams:
            self._ended = anyio.Event()
            await wait_shielded(self._ended, timeout)
        return not self._streams

    def _started_now(self) -> None:
        self._started = time.monotonic()

    def require_broker(self) -> Broker:
        """Return the broker if it is running.

        Raises:
            HubHTTPError: ``unavailable`` (503).
        """
        broker = self.broker
        if not broker.running:
            raise HubHTTPError(
                "unavailable",
                "the broker is not running (when mounting the hub, pass broker= and enter it "
                "in your app's lifespan)",
            )
        return broker

    @property
    def max_topics(self) -> int:
        """Topics allowed per request: the smaller of the settings' and the broker's limit."""
        return min(self.settings.max_topics, self.broker.max_topics)

    @property
    def max_patterns(self) -> int:
        """Patterns allowed per subscription: the smaller of the settings' and the broker's."""
        return min(self.settings.max_patterns, self.broker.max_patterns)


def _drain(stream: EventSourceResponse, subscription: Subscription) -> None:
    """End a hub stream for a shutdown: what is queued goes out, then the final empty body; a
    client that does not take it within ``SHUTDOWN_SEND_TIMEOUT`` seconds (or ``send_timeout``
    if shorter) is left for the server to close."""
    subscription.close()
    stream.shutdown(grace=stream.SHUTDOWN_SEND_TIMEOUT)
