"""An httpcore network backend whose connections another thread can abort at any moment.

A thread blocked in ``httpx.Client.send`` (connecting, or waiting for the response headers)
cannot be interrupted through httpx: closing the client from another thread does not wake it,
so :meth:`~ssehub.client.EventSource.close` used to wait up to the read timeout (forever with
``idle_timeout=None``). :class:`AbortableBackend` creates every socket itself and records it
while it is live; :meth:`AbortableBackend.abort` then shuts all of them down, which wakes a
blocked ``recv``/``send``/TLS handshake at once, and wakes a pending connect through a wake-up
socket (a socket that is still connecting cannot be shut down reliably on every OS).

Only public httpcore API is used for the backend and its streams. Installing the backend into
``httpx.HTTPTransport`` needs one private attribute (see :func:`abortable_client`).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["AbortableBackend", "abortable_client"]

# What httpcore's own socket options type is; spelled out so no private module is imported.
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


class AbortableBackend(httpcore.SyncBackend):
    """``httpcore.SyncBackend`` with sockets that :meth:`abort` can stop from any thread.

    After :meth:`abort`, every live connection is shut down and every new or pending connection
    attempt fails with ``httpcore.ConnectError``; aborting is final.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._aborted = False
        # Written once by abort(): a connect waiting in select() sees it readable and gives up,
        # whether abort() came before or during the wait, so no wake-up can be lost.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.settimeout(0.0)

    # -- registry -------------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._aborted:
                self._sockets.add(sock)
                return
        sock.close()
        raise httpcore.ConnectError("the event source was closed")

    def _replace(self, old: socket.socket, new: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(old)
            self._sockets.add(new)
            if self._aborted:
                # abort() shut ``old`` down, which wrap_socket had already detached.
                _shut(new)

    def _check(self, sock: socket.socket) -> None:
        """Fail a connection that completed while (or after) abort() ran."""
        with self._lock:
            aborted = self._aborted
        if aborted:
            self._discard_and_close(sock)
            raise httpcore.ConnectError("the event source was closed")

    @property
    def aborted(self) -> bool:
        """Whether :meth:`abort` was called."""
        with self._lock:
            return self._aborted

    def abort(self) -> None:
        """Stop every live and future connection of this backend; safe from any thread."""
        # Everything under the lock (none of it blocks): a socket is closed only under the
        # lock too (_discard_and_close, close), so its descriptor cannot be reused by another
        # socket between our deciding to shut it down and doing so.
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            if self._wake_writer.fileno() >= 0:
                self._wake_writer.send(b"x")
            for sock in self._sockets:
                # Closing a socket does not wake a thread blocked on it; shutting it down does.
                _shut(sock)

    def close(self) -> None:
        """Release the wake-up sockets (after the client that used the backend is closed)."""
        with self._lock:
            self._wake_reader.close()
            self._wake_writer.close()

    def _discard_and_close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
            sock.close()

    # -- httpcore.NetworkBackend ----------------------------------------------------------------

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect like ``socket.create_connection`` (every address in turn), abortably."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            self._track(sock)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if local_address is not None:
                    sock.bind((local_address, 0))
                self._connect(sock, address, deadline)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                self._discard_and_close(sock)
                if self.aborted:
                    raise httpcore.ConnectError("the event source was closed") from exc
                last = exc if isinstance(exc, httpcore.ConnectTimeout) else _connect_error(exc)
                continue
            self._check(sock)
            return _Stream(sock, self)
        raise last if last is not None else httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to a Unix socket, abortably."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._track(sock)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            self._connect(sock, path, deadline)
        except (OSError, httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            self._discard_and_close(sock)
            if isinstance(exc, httpcore.ConnectTimeout):
                raise
            raise _connect_error(exc) from exc
        self._check(sock)
        return _Stream(sock, self)

    def _connect(self, sock: socket.socket, address: Any, deadline: float | None) -> None:
        # A non-blocking connect waited for in select() together with the wake-up socket: a
        # blocking connect() cannot be interrupted portably from another thread.
        sock.settimeout(0.0)
        code = sock.connect_ex(address)
        if code in _IN_PROGRESS:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = {key.fileobj for key, _ in selector.select(remaining)}
            if self._wake_reader in ready:
                raise httpcore.ConnectError("the event source was closed")
            if sock not in ready:
                raise httpcore.ConnectTimeout("timed out connecting")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))  # "Connection refused", as connect() says
        sock.settimeout(None)


class _Stream(httpcore.NetworkStream):
    """A socket stream as httpcore's own, mapping socket errors onto httpcore's exceptions."""

    def __init__(self, sock: socket.socket, backend: AbortableBackend) -> None:
        self._sock = sock
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)
        except TimeoutError as exc:  # socket.timeout; a subclass of OSError, so first
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            while buffer:
                self._sock.settimeout(timeout)
                sent = self._sock.send(buffer)
                buffer = buffer[sent:]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._backend._discard_and_close(self._sock)

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        try:
            self._sock.settimeout(timeout)
            # The handshake runs after the TLS socket is registered, so abort() can stop it.
            tls = ssl_context.wrap_socket(
                self._sock, server_hostname=server_hostname, do_handshake_on_connect=False
            )
            self._backend._replace(self._sock, tls)
            self._sock = tls
            tls.do_handshake()
        except TimeoutError as exc:
            self.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            self.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return _Stream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            # An SSLSocket has the SSLObject methods httpcore uses (selected_alpn_protocol).
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            return _readable(self._sock)
        return None


def _readable(sock: socket.socket) -> bool:
    # An idle pooled connection that is readable was closed (or broken) by the server.
    if sock.fileno() < 0:
        return True
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(0))


def _shut(sock: socket.socket) -> None:
    try:
        # socket.socket.shutdown, not SSLSocket.shutdown: no TLS state is touched while the
        # owning thread may be inside a TLS read.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or not connected yet (the connect wait is woken instead)


def _connect_error(exc: BaseException) -> httpcore.ConnectError:
    if isinstance(exc, httpcore.ConnectError):
        return exc
    return httpcore.ConnectError(str(exc))


def abortable_client() -> tuple[httpx.Client, AbortableBackend]:
    """An ``httpx.Client`` as ``httpx.Client()`` makes it, on an :class:`AbortableBackend`.

    Raises:
        RuntimeError: this httpx version lays out ``HTTPTransport`` differently, so the
            backend cannot be installed (rather than silently losing prompt ``close()``).
    """
    backend = AbortableBackend()
    transport = httpx.HTTPTransport()
    # httpx (0.28) offers no public way to give HTTPTransport an httpcore network backend, and
    # reimplementing the transport would copy its private exception mapping. It keeps its
    # httpcore pool in ``_pool`` and only ever uses it through the pool's public methods, so we
    # replace that pool with one built on our backend (public httpcore API, httpx's defaults).
    # Checked first, so a change in httpx fails here, loudly, instead of at the first close().
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        backend.close()
        # Not a TypeError: nothing the caller passed is wrong; the installed httpx is.
        raise RuntimeError(  # noqa: TRY004
            f"ssehub.client: httpx {httpx.__version__} has no HTTPTransport._pool connection "
            "pool, so EventSource cannot install the network backend that lets close() "
            "interrupt a connection attempt; pass your own client= or pin a supported httpx"
        )
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=backend,
    )
    return httpx.Client(transport=transport), backend
