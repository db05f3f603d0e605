"""The hub's channel routes: create channels and listeners, stream a listener, broadcast, dispatch.

``/channels`` (``POST`` create, ``GET`` list), ``/channels/{c}`` (``DELETE``),
``/channels/{c}/listeners`` (``POST``: returns an id), ``/channels/{c}/listeners/{l}/events``
(``GET``: the listener's Server-Sent Events), ``/channels/{c}/broadcast`` and
``/channels/{c}/listeners/{l}/messages`` (``POST``: send a message). Every body is JSON; every
error is the hub's JSON error (404 ``unknown_channel`` / ``unknown_listener`` for unknown ids).

A listener created over HTTP belongs to its HTTP clients: when its stream's client goes away the
listener is kept for ``listener_linger`` seconds, so an ``EventSource`` that reconnects resumes
with ``Last-Event-ID``, and is then removed. A listener no client ever connects to is removed
the same way. Those timers, and the expiry of a stream's token, are calls on the channels' one
:class:`~ssehub._deadlines.Deadlines` task, on the broker's clock: no task per listener or
stream, no polling. The hub's drain ends every open listener stream (no watcher per stream).

Each handler is one uniform shape, ``_handle(request, operation)``, so middleware or per-route
checks (authentication) apply to all of them alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._clock import Clock, SystemClock
from .._deadlines import Deadline, Deadlines
from .._exceptions import (
    AlreadyExists,
    BrokerClosed,
    ConfigurationError,
    EventTooLarge,
    EventValidationError,
    LimitReached,
    ListenerBusy,
    MessageRejected,
    SendTimeoutError,
    UnknownChannel,
    UnknownListener,
)
from .._excgroups import collapse_excgroups
from ..broker.history import HistoryBudget
from ..channels import END_OF_STREAM, Channel, ChannelRegistry, Listener, Message
from ..response import EventSourceResponse
from ._auth import principal_of
from ._auth_channels import authorize_channel
from ._body import read_body
from ._errors import HubHTTPError
from ._guard import check_last_event_id
from ._publish import check_content_type, check_not_reserved

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send

    from ..broker import Broker
    from ._guard import Guard
    from ._limits import Lease
    from ._settings import HubSettings

__all__ = ["HubChannels", "channel_routes", "with_channels"]

logger = logging.getLogger("ssehub.hub")

_SENDABLE_RESERVED: Final = frozenset({END_OF_STREAM})
"""Reserved message types a sender may use: the end-of-stream type ends a listener's stream."""

Operation = Callable[["HubChannels", Request], Awaitable[Response]]

_MESSAGE_FIELDS: Final = frozenset({"type", "payload"})


class HubChannels:
    """The hub's channels: a :class:`~ssehub.ChannelRegistry`, the HTTP listeners' timers and
    their open streams.

    Available as ``app.state.hub.channels`` (``None`` when the ``channels`` setting is off).
    The hub's lifespan enters it; a hub mounted without its lifespan must enter it itself
    (``async with app.state.hub.channels:``) for the channel routes to answer.

    Args:
        settings: the hub's settings (limits, queue and history options, ``listener_linger``).
        clock: the clock of linger timers and token expiry (the hub passes its broker's, so a
            test that drives the broker with a ``ManualClock`` drives the timers too).

    Attributes:
        registry: the channels.
    """

    def __init__(self, settings: HubSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.registry = ChannelRegistry(
            max_channels=settings.max_channels,
            queue_size=settings.queue_size,
            overflow=settings.slow_policy,
            history_size=settings.history,
            history_ttl=settings.history_ttl,
            max_listeners=settings.max_listeners,
            budget=HistoryBudget.of(settings),  # -- byte budgets: as for topics
        )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._deadlines = Deadlines(self.clock)
        self._timers: dict[Listener, Deadline] = {}
        self._streams: set[_ListenerStream] = set()
        self._draining = False
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> HubChannels:
        await self.registry.__aenter__()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self._deadlines.run, name="ssehub hub: channel timers")
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        task_group.cancel_scope.cancel()  # the timers: the channels all close now
        try:
            await task_group.__aexit__(exc_type, exc, tb)
        finally:
            # The heap's callbacks reference channels and listeners: free them with the timers.
            for timer in self._timers.values():
                self._deadlines.cancel(timer)
            self._timers.clear()
            await self.registry.__aexit__(exc_type, exc, tb)
        return None

    @property
    def running(self) -> bool:
        """Whether the channels are inside their ``async with`` block."""
        return self._task_group is not None and self.registry.running

    @property
    def draining(self) -> bool:
        """Whether :meth:`drain` was called: listener streams then end as soon as they open."""
        return self._draining

    def drain(self) -> None:
        """End every open listener stream cleanly, as for a server shutdown (without the
        end-of-stream frame: clients reconnect to the next server); idempotent."""
        self._draining = True
        for stream in list(self._streams):
            stream.shutdown()

    def lingering(self) -> int:
        """Return how many HTTP listeners are waiting for a client now (each has one timer)."""
        return len(self._timers)

    def linger(self, channel: Channel, listener: Listener, *, created: bool = False) -> None:
        """Remove ``listener`` unless a client streams it within ``listener_linger`` seconds.

        Args:
            channel: the listener's channel.
            listener: a listener that has no client now.
            created: it was just created (with ``listener_linger`` 0 it then waits for its
                first client indefinitely, instead of being removed at once).
        """
        task_group = self._task_group
        if task_group is None or listener.id not in channel:
            return
        if self.settings.listener_linger == 0:
            if not created:
                channel.remove_listener(listener.id)
            return
        self.connected(listener)  # at most one timer per listener
        when = self.clock.time() + self.settings.listener_linger
        self._timers[listener] = self._deadlines.call_at(
            when, partial(self._linger_ended, channel, listener)
        )

    def connected(self, listener: Listener) -> None:
        """A client streams ``listener`` now: stop its removal timer.

        Args:
            listener: the listener whose stream has just opened.
        """
        timer = self._timers.pop(listener, None)
        if timer is not None:
            self._deadlines.cancel(timer)

    def _linger_ended(self, channel: Channel, listener: Listener) -> None:
        del self._timers[listener]
        if listener.id in channel and channel.get_listener(listener.id) is listener:
            channel.remove_listener(listener.id)

    def require(self) -> ChannelRegistry:
        """Return the registry if it runs.

        Raises:
            HubHTTPError: ``unavailable`` (503).
        """
        if not self.running:
            raise HubHTTPError("unavailable", "the channels are not running")
        return self.registry


class _Hub(Protocol):
    """What the channels' lifespan needs of the hub (``HubState``, which imports this
    module: naming it here would make the two import each other)."""

    settings: HubSettings
    broker: Broker
    channels: HubChannels | None

    def drain(self) -> None: ...


def with_channels(
    hub: _Hub,
    inner: Callable[[Starlette], AbstractAsyncContextManager[None]],
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Wrap the hub's lifespan so the channels (and the socket ingest, if set) run inside it.

    The inner lifespan enters the broker first; the channels and the ingest stop first. Open
    channel streams are drained (they end without the end-of-stream frame, so clients
    reconnect to the next server) before the channels close.

    Args:
        hub: the hub state; its ``channels`` attribute is entered when not ``None``.
        inner: the hub's own lifespan.

    Returns:
        The combined lifespan.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The ingest's task group wraps a failure to listen (a socket path in use) in a
        # group; the server reports the bare error (and the hub says it in one line).
        with collapse_excgroups():
            async with inner(app), AsyncExitStack() as stack:
                channels: HubChannels | None = getattr(hub, "channels", None)
                if channels is not None:
                    await stack.enter_async_context(channels)
                if _ingest_enabled(hub.settings):
                    from ..channels._ingest import serve_ingest

                    task_group = await stack.enter_async_context(anyio.create_task_group())
                    stack.callback(task_group.cancel_scope.cancel)  # exits first: the ingest
                    registry = channels.registry if channels is not None else None
                    await task_group.start(serve_ingest, hub.broker, registry, hub.settings)
                try:
                    yield
                finally:
                    hub.drain()  # streams end as a restart, not as the end of their listener

    return lifespan


def _ingest_enabled(settings: HubSettings) -> bool:
    return settings.socket is not None or settings.ingest_port is not None


# -- request helpers -------------------------------------------------------------------------


async def _json_body(request: Request, limit: int, *, optional: bool = False) -> Any:
    """Read a bounded JSON body (``Content-Length`` first, then while streaming)."""
    declared = request.headers.get("content-length")
    if optional and declared in (None, "0") and "transfer-encoding" not in request.headers:
        return {}
    check_content_type(request.headers.get("content-type"))
    body = await read_body(request, limit)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HubHTTPError("invalid_json", "the body is not valid JSON") from None


def _object(value: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HubHTTPError("invalid_body", "the body must be a JSON object")
    unknown = value.keys() - allowed
    if unknown:
        raise HubHTTPError(
            "unknown_field",
            f"unknown field {min(unknown)[:64]!r}; allowed: {', '.join(sorted(allowed))}",
        )
    return value


def _name(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise HubHTTPError("invalid_name", f"the {kind} must be a string")
    try:
        from ..channels._listener import check_name

        return check_name(kind, value)
    except ConfigurationError as exc:
        raise HubHTTPError("invalid_name", str(exc)) from None


def _message(body: Any) -> Message:
    item = _object(body, _MESSAGE_FIELDS)
    kind = item.get("type", "message")
    if not isinstance(kind, str):
        raise HubHTTPError("invalid_event", "'type' must be a string")
    check_not_reserved(kind, "message types", allowed=_SENDABLE_RESERVED)
    try:
        message = Message(kind, item.get("payload"))
        if not message.is_end:
            message.to_event()  # the reserved prefix and the payload, before any hook runs
    except EventValidationError as exc:
        code = "invalid_data" if exc.field == "data" else "invalid_event"
        raise HubHTTPError(code, str(exc)) from None
    return message


def _channel(hub: HubChannels, request: Request) -> Channel:
    return hub.require().get(request.path_params["channel"])


def _describe(channel: Channel) -> dict[str, Any]:
    return {"name": channel.name, "listeners": len(channel)}


# -- operations ------------------------------------------------------------------------------


async def _create_channel(hub: HubChannels, request: Request) -> Response:
    body = _object(await _json_body(request, hub.settings.max_body_size), frozenset({"name"}))
    if "name" not in body:
        raise HubHTTPError("invalid_name", "'name' is required")
    channel = await hub.require().create(_name(body["name"], "channel name"))
    return JSONResponse(_describe(channel))


async def _list_channels(hub: HubChannels, request: Request) -> Response:
    channels = [_describe(channel) for channel in hub.require().list()]
    return JSONResponse({"channels": channels}, headers={"Cache-Control": "no-store"})


async def _delete_channel(hub: HubChannels, request: Request) -> Response:
    registry = hub.require()
    name = request.path_params["channel"]
    registry.remove(name)
    return JSONResponse({"name": name, "removed": True})


async def _add_listener(hub: HubChannels, request: Request) -> Response:
    body = _object(
        await _json_body(request, hub.settings.max_body_size, optional=True), frozenset({"id"})
    )
    channel = _channel(hub, request)
    wanted = _name(body["id"], "listener id") if body.get("id") is not None else None
    listener = channel.add_listener(wanted)
    hub.linger(channel, listener, created=True)  # until its first client connects
    path = f"{request.scope.get('root_path', '')}/channels/{channel.name}/listeners/{listener.id}"
    return JSONResponse({"channel": channel.name, "id": listener.id, "events": path + "/events"})


async def _broadcast(hub: HubChannels, request: Request) -> Response:
    message = _message(await _json_body(request, hub.settings.max_body_size))
    channel = _channel(hub, request)
    _take_publish_rate(request)  # -- security: after validation, before any hook runs
    listeners = len(channel)
    message_id = await channel.broadcast(message)
    return JSONResponse({"id": message_id, "listeners": listeners})


async def _dispatch(hub: HubChannels, request: Request) -> Response:
    message = _message(await _json_body(request, hub.settings.max_body_size))
    channel = _channel(hub, request)
    listener_id = request.path_params["listener"]
    channel.get_listener(listener_id)  # a 404 spends no rate token
    _take_publish_rate(request)  # -- security: after validation, before the hook runs
    message_id = await channel.dispatch(listener_id, message)
    return JSONResponse({"id": message_id, "listeners": 1})


def _take_publish_rate(request: Request) -> None:
    """Spend one event of the sender's ``POST /publish`` rate (a broadcast is published once).

    Raises:
        HubHTTPError: ``rate_limited`` (429); nothing was sent.
    """
    guard = _guard_of(request)
    if guard is not None:
        guard.take_publish_rate(request.scope, 1)


class _ListenerStream(EventSourceResponse):
    """A listener's event stream; when it ends the listener lingers, then is removed.

    Under authentication it follows the rules of topic streams: it holds a connection place
    (``lease``) while open and ends cleanly when its token expires (``deadline``, on the hub's
    clock). The hub's drain ends it (:meth:`HubChannels.drain`).
    """

    def __init__(
        self,
        hub: HubChannels,
        channel: Channel,
        listener: Listener,
        *,
        lease: Lease | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        last_event_id = kwargs.pop("last_event_id")
        super().__init__(channel.message_stream(listener, last_event_id=last_event_id), **kwargs)
        self._hub = hub
        self._channel = channel
        self._listener = listener
        self._lease = lease
        self._deadline = deadline
        hub.connected(listener)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self._hub
        expiry = None
        try:
            hub._streams.add(self)
            if self._deadline is not None:
                expiry = hub._deadlines.call_at(self._deadline, self._expired)
            try:
                await super().__call__(scope, receive, send)
            except SendTimeoutError:
                pass  # a frozen client: the stream ends, as if it had disconnected
        finally:
            hub._streams.discard(self)
            if expiry is not None:
                hub._deadlines.cancel(expiry)
            if self._lease is not None:
                self._lease.release()
            hub.linger(self._channel, self._listener)

    def _expired(self) -> None:
        # Ends it as a shutdown does (no cancellation in the middle of a send). The call runs
        # on the deadline task, never before the stream runs: for generator content (a
        # listener's message stream, never a frame source with a prepare() to await),
        # super().__call__ sets the stream up before its first checkpoint.
        logger.info("ended a listener stream: its token expired")
        self.shutdown()


async def _events(hub: HubChannels, request: Request) -> Response:
    channel = _channel(hub, request)
    listener = channel.get_listener(request.path_params["listener"])
    if listener.channel is not channel:  # pragma: no cover - registered listeners are attached
        raise UnknownListener(listener.id)
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    # -- security: before anything is opened
    check_last_event_id(last_event_id, hub.settings.max_last_event_id_length)
    # -- security: a connection place and the token's expiry, as for topic streams
    guard = _guard_of(request)
    lease = deadline = None
    if guard is not None:
        principal = principal_of(request.scope)
        lease = guard.acquire(request.scope, principal)
        deadline = guard.deadline(principal.expires_at)
    if request.method == "HEAD":
        # GET's status and headers (the connection limit checked), no place held.
        if lease is not None:
            lease.release()
        return EventSourceResponse((), ping=0)
    try:
        return _ListenerStream(
            hub,
            channel,
            listener,
            lease=lease,
            deadline=deadline,
            last_event_id=last_event_id,
            ping=hub.settings.ping,
            send_timeout=hub.settings.send_timeout,
            # Opened while the hub drains: it sends its headers and ends at once (a stream
            # that is already open is ended by the drain itself).
            shutdown_event=_set_event() if hub.draining else None,
        )
    except BaseException:
        if lease is not None:
            lease.release()
        raise


def _set_event() -> anyio.Event:
    event = anyio.Event()
    event.set()
    return event


def _guard_of(request: Request) -> Guard | None:
    """The hub's guard, when these routes run inside a hub app (``app.state.hub``)."""
    hub_state = getattr(request.app.state, "hub", None)
    return getattr(hub_state, "guard", None)


# -- routing ---------------------------------------------------------------------------------


def _error(exc: Exception) -> HubHTTPError:
    """Map a channel exception to the hub's JSON error."""
    if isinstance(exc, UnknownChannel):
        return HubHTTPError("unknown_channel", f"no channel named {exc.name[:64]!r}")
    if isinstance(exc, UnknownListener):
        return HubHTTPError("unknown_listener", f"no listener with id {exc.listener_id[:64]!r}")
    if isinstance(exc, AlreadyExists):
        return HubHTTPError("already_exists", str(exc))
    if isinstance(exc, LimitReached):
        return HubHTTPError("limit_reached", str(exc))
    if isinstance(exc, ListenerBusy):
        return HubHTTPError("listener_busy", str(exc))
    if isinstance(exc, MessageRejected):
        return HubHTTPError("message_rejected", str(exc) or "a listener refused the message")
    if isinstance(exc, EventValidationError):
        code = "invalid_data" if exc.field == "data" else "invalid_event"
        return HubHTTPError(code, str(exc))
    if isinstance(exc, EventTooLarge):
        detail = f"the message is larger than {exc.limit} bytes once encoded (max_event_size)"
        return HubHTTPError("event_too_large", detail)
    return HubHTTPError("unavailable", "the channel is not running")


_CHANNEL_ERRORS: Final = (
    UnknownChannel,
    UnknownListener,
    AlreadyExists,
    LimitReached,
    ListenerBusy,
    MessageRejected,
    EventValidationError,
    EventTooLarge,
    BrokerClosed,
)


async def _channels_root(hub: HubChannels, request: Request) -> Response:
    if request.method == "POST":
        return await _create_channel(hub, request)
    return await _list_channels(hub, request)


def _endpoint(hub: HubChannels, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            try:
                authorize_channel(request)  # -- security: the topic rules, channel N = channels/N
                return await operation(hub, request)
            except _CHANNEL_ERRORS as exc:
                raise _error(exc) from None
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is left to read an answer
        except HubHTTPError as exc:
            return exc.response()

    endpoint.__name__ = operation.__name__.lstrip("_")
    return endpoint


def channel_routes(hub: HubChannels) -> list[BaseRoute]:
    """Return the channel routes, bound to ``hub``.

    Args:
        hub: the hub's channels.

    Returns:
        The routes (``tests/hub/test_hub_openapi.py`` checks the OpenAPI document lists them).
    """
    listener = "/channels/{channel}/listeners/{listener}"
    return [
        # One route for both methods, so a 405 for any other method lists both in Allow.
        Route("/channels", _endpoint(hub, _channels_root), methods=["GET", "POST"]),
        Route("/channels/{channel}", _endpoint(hub, _delete_channel), methods=["DELETE"]),
        Route("/channels/{channel}/listeners", _endpoint(hub, _add_listener), methods=["POST"]),
        Route(listener + "/events", _endpoint(hub, _events), methods=["GET"]),
        Route("/channels/{channel}/broadcast", _endpoint(hub, _broadcast), methods=["POST"]),
        Route(listener + "/messages", _endpoint(hub, _dispatch), methods=["POST"]),
    ]
