"""Socket ingest: other processes feed the hub with newline-delimited JSON over a socket.

``ssehub serve --socket PATH`` (a Unix socket, mode 0600 unless ``--socket-mode`` says
otherwise) and ``--ingest-port P`` (TCP on 127.0.0.1 unless ``--ingest-host`` says otherwise)
accept one JSON object per line and answer one JSON line per command, in order::

    {"command": "publish", "topic": "orders", "data": {"id": 7}, "event": "created"}
    {"command": "broadcast", "channel": "jobs", "type": "job", "payload": {"n": 1}}
    {"command": "dispatch", "channel": "jobs", "listener": "w1", "type": "job", "payload": 2}

    {"ok": true, "id": "k3f9-12"}
    {"ok": false, "error": "unknown_channel", "detail": "no channel named 'jobs'"}

``publish`` takes the fields of ``POST /publish`` (one event, ``idempotency_key`` included: a
command repeated with the same key within the history window stores nothing and answers the
first id); ``broadcast`` and ``dispatch`` those of the channel routes. Errors use the hub's
error codes; ``outcome_unknown`` (the backend did not answer: the event may be published, and
the reply adds ``"outcome": "unknown"``) is the one to retry with the same key, as is
``unavailable`` (nothing was published). A malformed line gets an error
reply and the connection stays usable. A line longer than the limit (the hub's
``max_body_size``) is never held in memory: what was buffered is dropped, the rest of the line
is read and discarded chunk by chunk, and the reply is ``{"ok": false, "error":
"line_too_long", ...}``. There is no authentication: keep the socket's permissions tight and the
TCP port on loopback.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.streams.stapled
from anyio.abc import ByteStream, SocketAttribute, TaskStatus

from .._exceptions import (
    AlreadyExists,
    BackendUnavailable,
    BrokerClosed,
    ChannelError,
    EventTooLarge,
    EventValidationError,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    InvalidTopic,
    LimitReached,
    ListenerBusy,
    MessageRejected,
    PublishOutcomeUnknown,
    UnknownChannel,
    UnknownListener,
)
from ..hub._errors import HubHTTPError
from ..hub._publish import check_not_reserved, parse_publish_body
from ._message import END_OF_STREAM, Message

if TYPE_CHECKING:
    from ..broker import Broker
    from ..hub._settings import HubSettings
    from ._registry import ChannelRegistry

__all__ = ["IngestHandler", "LineReader", "serve_ingest"]

logger = logging.getLogger("ssehub.ingest")

_CHUNK: Final = 65536
"""Bytes per read: one socket buffer's worth, so a long line costs few reads."""
_PROBE_TIMEOUT: Final = 1.0  # seconds to tell a live socket (it accepts) from a stale one

_CHANNEL_CODES: Final = (
    (UnknownChannel, "unknown_channel"),
    (UnknownListener, "unknown_listener"),
    (AlreadyExists, "already_exists"),
    (LimitReached, "limit_reached"),
    (ListenerBusy, "listener_busy"),
    (MessageRejected, "message_rejected"),
)


class LineReader:
    """Split a byte stream into lines of at most ``limit`` bytes, in bounded memory.

    Args:
        stream: the connection.
        limit: the longest line accepted, without its ``\\n``.
        timeout: seconds a line begun may go without a byte more (``None``: no bound);
            then :meth:`readline` raises ``TimeoutError``. Waiting between lines is not
            bounded: a producer may keep a quiet connection open.
    """

    def __init__(self, stream: ByteStream, limit: int, timeout: float | None = None) -> None:
        self._stream = stream
        self._limit = limit
        self._timeout = timeout
        self._buffer = bytearray()
        self._eof = False

    async def readline(self) -> bytes | None:
        """Return the next line without its ``\\n`` (``None`` at the end of the stream).

        Raises:
            EventTooLarge: the line exceeds the limit; it has been read and discarded, so the
                next call returns the line after it.
            TimeoutError: a line begun got no byte more for ``timeout`` seconds.
        """
        buffer = self._buffer
        searched = 0
        while True:
            end = buffer.find(b"\n", searched)
            if end >= 0:
                if end > self._limit:
                    del buffer[: end + 1]
                    raise EventTooLarge(self._limit)
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                return line
            if len(buffer) > self._limit:
                await self._discard_line()
                raise EventTooLarge(self._limit)
            searched = len(buffer)
            if self._eof:
                if buffer:
                    line = bytes(buffer)
                    buffer.clear()
                    return line
                return None
            await self._fill()

    async def _fill(self, *, partial: bool | None = None) -> None:
        # A line begun holds its bytes (up to the limit) and a task while it waits: a client
        # that stops sending lets them go after the timeout. (One that keeps trickling bytes
        # keeps its line: the connection cap bounds how many can.)
        partial = bool(self._buffer) if partial is None else partial
        timeout = self._timeout if partial else None
        try:
            with anyio.fail_after(timeout):
                self._buffer += await self._stream.receive(_CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            self._eof = True

    async def _discard_line(self) -> None:
        # Drop what is buffered and read on, keeping nothing, until the line ends.
        self._buffer.clear()
        while not self._eof:
            await self._fill(partial=True)
            end = self._buffer.find(b"\n")
            if end >= 0:
                del self._buffer[: end + 1]
                return
            self._buffer.clear()


class IngestHandler:
    """Executes ingest commands against a broker and a channel registry.

    Args:
        broker: the hub's broker (``publish``).
        registry: the hub's channels (``broadcast``, ``dispatch``); ``None`` when off.
        max_topics: topics per published event.
    """

    def __init__(
        self, broker: Broker, registry: ChannelRegistry | None, *, max_topics: int
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.max_topics = max_topics

    async def execute(self, line: bytes) -> dict[str, Any]:
        """Run one command line and return the reply (never raises for bad input).

        Args:
            line: one JSON object.

        Returns:
            ``{"ok": True, "id": ...}`` or ``{"ok": False, "error": code, "detail": text}``.
        """
        try:
            return {"ok": True, "id": await self._run(line)}
        except HubHTTPError as exc:
            return {"ok": False, "error": exc.code, "detail": exc.detail}
        except ChannelError as exc:
            code = next((c for kind, c in _CHANNEL_CODES if isinstance(exc, kind)), "invalid_body")
            return {"ok": False, "error": code, "detail": str(exc)}
        except (EventValidationError, InvalidTopic) as exc:
            code = "invalid_topic" if isinstance(exc, InvalidTopic) else "invalid_event"
            if isinstance(exc, EventValidationError) and exc.field == "data":
                code = "invalid_data"
            return {"ok": False, "error": code, "detail": str(exc)}
        except (InvalidIdempotencyKey, IdempotencyKeyReused) as exc:
            code = "idempotency_key_reused"
            if isinstance(exc, InvalidIdempotencyKey):
                code = "invalid_idempotency_key"
            return {"ok": False, "error": code, "detail": str(exc)}
        except PublishOutcomeUnknown as exc:
            detail = str(exc)
            return {"ok": False, "error": "outcome_unknown", "outcome": "unknown", "detail": detail}
        except (BrokerClosed, BackendUnavailable) as exc:
            return {"ok": False, "error": "unavailable", "detail": str(exc)}
        except EventTooLarge as exc:  # max_event_size, after parsing: nothing was stored
            detail = f"the event is larger than {exc.limit} bytes once encoded (max_event_size)"
            return {"ok": False, "error": "event_too_large", "detail": detail}

    async def _run(self, line: bytes) -> str | None:
        try:
            item = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HubHTTPError("invalid_json", "the line is not valid JSON") from None
        if not isinstance(item, dict):
            raise HubHTTPError("invalid_body", "each line must be a JSON object")
        command = item.pop("command", None)
        if command == "publish":
            # POST /publish's validation, exactly: the same fields, limits and error codes.
            body = json.dumps(item).encode()
            requests, _ = parse_publish_body(body, max_topics=self.max_topics, max_batch=1)
            request = requests[0]
            stored = await self.broker.publish(
                request.topics,
                request.data,
                event=request.event,
                retry=request.retry,
                idempotency_key=request.idempotency_key,
            )
            return stored.id
        if command in ("broadcast", "dispatch"):
            return await self._send(command, item)
        raise HubHTTPError("invalid_body", "'command' must be one of: publish, broadcast, dispatch")

    async def _send(self, command: str, item: dict[str, Any]) -> str | None:
        if self.registry is None:
            raise HubHTTPError("unavailable", "channels are switched off in this hub")
        allowed = {"channel", "type", "payload"} | (
            {"listener"} if command == "dispatch" else set()
        )
        unknown = item.keys() - allowed
        if unknown:
            raise HubHTTPError("unknown_field", f"unknown field {min(unknown)[:64]!r}")
        name = item.get("channel")
        if not isinstance(name, str):
            raise HubHTTPError("invalid_name", "'channel' (a string) is required")
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise HubHTTPError("invalid_event", "'type' must be a string")
        check_not_reserved(kind, "message types", allowed=frozenset({END_OF_STREAM}))
        message = Message(kind, item.get("payload"))
        channel = self.registry.get(name)
        if command == "broadcast":
            return await channel.broadcast(message)
        listener = item.get("listener")
        if not isinstance(listener, str):
            raise HubHTTPError("invalid_name", "'listener' (a string) is required")
        return await channel.dispatch(listener, message)


async def _serve_connection(
    handler: IngestHandler, stream: ByteStream, limit: int, line_timeout: float | None
) -> None:
    async with stream:
        reader = LineReader(stream, limit, line_timeout)
        while True:
            try:
                line = await reader.readline()
            except TimeoutError:
                # The half-sent line is dropped with the connection: a client that resumes
                # sends it again, whole, on a new one.
                detail = f"no byte of the line for {line_timeout} s"
                await _send_last(stream, "line_timeout", detail)
                return
            except EventTooLarge:
                reply: dict[str, Any] = {
                    "ok": False,
                    "error": "line_too_long",
                    "detail": f"the line is longer than {limit} bytes",
                }
            else:
                if line is None:
                    return
                if not line.strip():
                    continue  # blank lines (keep-alives, a trailing \r\n) need no answer
                reply = await handler.execute(line)
            try:
                await stream.send(_encode(reply))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the client left without reading its answer


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


async def _send_last(stream: ByteStream, error: str, detail: str) -> None:
    """Send one error reply before the connection is closed, if the client takes it soon."""
    with anyio.move_on_after(_PROBE_TIMEOUT):
        try:
            await stream.send(_encode({"ok": False, "error": error, "detail": detail}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def serve_ingest(
    broker: Broker,
    registry: ChannelRegistry | None,
    settings: HubSettings,
    *,
    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the settings' Unix socket and/or TCP port until cancelled.

    Args:
        broker: the hub's running broker.
        registry: the hub's running channels, or ``None``.
        settings: ``socket``, ``socket_mode``, ``ingest_port``, ``ingest_host``,
            ``max_body_size`` (the line limit), ``max_topics``, ``body_timeout`` (how long a
            line begun may wait for its next byte) and ``max_pending_connections`` (the
            most connections at once; more are answered ``too_many_connections`` and closed).
        task_status: reports the addresses listened on (``unix:PATH``, ``tcp:HOST:PORT``).

    Raises:
        OSError: a socket cannot be created (address in use, no permission).
    """
    handler = IngestHandler(broker, registry, max_topics=settings.max_topics)
    limit = settings.max_body_size
    listeners: list[anyio.abc.Listener[Any]] = []
    addresses: list[str] = []
    ours: tuple[int, int] | None = None  # the socket file's device and inode, once bound
    try:
        if settings.socket is not None:
            await _refuse_live_socket(settings.socket)
            unix = await anyio.create_unix_listener(settings.socket, mode=settings.socket_mode)
            listeners.append(unix)
            ours = _identity(settings.socket)
            addresses.append(f"unix:{settings.socket}")
        if settings.ingest_port is not None:
            tcp = await anyio.create_tcp_listener(
                local_host=settings.ingest_host, local_port=settings.ingest_port
            )
            listeners.append(tcp)
            for sock in tcp.listeners:
                port = sock.extra(SocketAttribute.local_port)  # noqa: S610 - not Django
                addresses.append(f"tcp:{settings.ingest_host}:{port}")
        multi = anyio.streams.stapled.MultiListener(listeners)
        logger.info("socket ingest listening on %s", ", ".join(addresses))
        open_connections = 0
        most = settings.max_pending_connections
        async with multi, anyio.create_task_group() as task_group:
            task_status.started(addresses)

            async def serve(stream: Any) -> None:
                nonlocal open_connections
                if open_connections >= most:
                    async with stream:
                        detail = f"the ingest serves {most} connections at most; retry later"
                        await _send_last(stream, "too_many_connections", detail)
                    return
                open_connections += 1
                try:
                    await _serve_connection(handler, stream, limit, settings.body_timeout)
                except Exception:
                    # A bug must cost one connection, never the ingest (or the hub).
                    logger.exception("an ingest connection failed; it was closed")
                finally:
                    open_connections -= 1

            await multi.serve(serve, task_group=task_group)
    finally:
        for listener in listeners:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
        if settings.socket is not None and ours is not None:
            _unlink_socket(settings.socket, ours)


async def _refuse_live_socket(path: str) -> None:
    """Raise ``OSError`` (``EADDRINUSE``) if a process accepts connections on ``path``.

    Binding removes a socket file that is there (anyio does, as a stale one is left by a
    process that was killed), live or not: a second hub started on the same path (a rolling
    restart) would take it silently, and the first would then remove the second's file when
    it stops. A stale file refuses the connection and is replaced as before.
    """
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # nothing there, or not a socket: binding says what is wrong
        with anyio.fail_after(_PROBE_TIMEOUT):
            stream = await anyio.connect_unix(path)
    except (OSError, TimeoutError):
        return  # refused (stale), gone meanwhile, or not answering: not a live listener
    await stream.aclose()
    raise OSError(
        errno.EADDRINUSE,
        f"another process is listening on the ingest socket {path}; stop it first, "
        "or give this hub another --socket",
    )


def _identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _unlink_socket(path: str, ours: tuple[int, int]) -> None:
    # Only the socket this hub bound: never a file that replaced it meanwhile, such as the
    # socket of a hub started on the same path after this one (a rolling restart).
    try:
        if _identity(path) == ours:
            os.unlink(path)
    except OSError:
        logger.warning("could not remove the ingest socket %s", path)
