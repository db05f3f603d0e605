"""A blocking client for the hub's socket ingest (used by ``ssehub publish --socket``).

Standard library only, so scripts and other processes can feed a hub without an event loop::

    with IngestClient("/run/ssehub.sock") as ingest:
        ingest.send({"command": "publish", "topic": "orders", "data": {"id": 7}})
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import ConfigurationError, IngestError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["IngestClient"]

_MAX_REPLY: Final = 1024 * 1024
"""Bytes a reply line may have: replies are short; this only stops a wrong peer flooding us."""


class IngestClient:
    """One connection to a hub's ingest socket; commands are answered in order.

    Args:
        address: a Unix socket path, or ``tcp://HOST:PORT``.
        timeout: seconds to wait for the connection and for each reply.

    Raises:
        ConfigurationError: ``address`` is not a path or a ``tcp://`` URL with a port.
    """

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        if address.startswith("tcp://"):
            host, _, port = address.removeprefix("tcp://").rstrip("/").rpartition(":")
            if not host or not port.isdigit():
                raise ConfigurationError(f"expected tcp://HOST:PORT, not {address!r}")
            self._target: tuple[int, Any] = (
                socket.AF_INET6 if ":" in host else socket.AF_INET,
                (host.strip("[]"), int(port)),
            )
        elif address:
            self._target = (socket.AF_UNIX, address)
        else:
            raise ConfigurationError("the ingest address must not be empty")
        self._sock: socket.socket | None = None
        self._file: Any = None

    def __enter__(self) -> IngestClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection.

        Raises:
            IngestError: ``connection``: the socket cannot be reached.
        """
        family, target = self._target
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            raise IngestError("connection", f"cannot connect to {self.address}: {exc}") from exc
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command and return the hub's ``{"ok": true, ...}`` reply.

        Args:
            command: the command object (``{"command": "publish", ...}``).

        Returns:
            The reply (with ``id``).

        Raises:
            IngestError: the hub refused it (``code`` is its error code), or the connection
                failed (``connection``).
        """
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        line = json.dumps(command, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        try:
            self._sock.sendall(line)
            raw = self._file.readline(_MAX_REPLY)
        except OSError as exc:
            self.close()
            raise IngestError("connection", f"the connection failed: {exc}") from exc
        if not raw.endswith(b"\n"):
            self.close()
            raise IngestError("connection", "the hub closed the connection without a reply")
        reply: dict[str, Any] = json.loads(raw)
        if not reply.get("ok"):
            raise IngestError(str(reply.get("error")), str(reply.get("detail")))
        return reply
