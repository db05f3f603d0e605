"""Real ASGI servers as subprocesses on 127.0.0.1, and a raw-socket HTTP/1.1 SSE reader.

Used by ``test_servers.py``. A server runs in its own process group (so a SIGINT reaches it the
way Ctrl-C in a terminal reaches a foreground job, and cleanup can kill every worker it forked);
its stdout and stderr are collected by threads. Readiness is a successful connect to its port,
retried with short attempts under a deadline. The stream reader speaks HTTP/1.1 over a plain
socket so a test can tell a clean end of body (the chunked ``0\\r\\n\\r\\n`` terminator) from a
connection that was merely closed or reset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ssehub.wire import EventParser, MessageEvent

from .test_hub_server import free_port

__all__ = [
    "REPO",
    "BodyEnd",
    "ChunkedDecoder",
    "RawStream",
    "ServerProcess",
    "bin_path",
    "free_port",
    "uvicorn_app",
]

REPO = Path(__file__).resolve().parents[2]
"""The project root: the working directory of every server (``tests.integration...`` imports)."""


def bin_path(name: str) -> str:
    """The console script ``name`` installed next to this interpreter (the .venv's bin)."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{name} is not installed next to {sys.executable}"
    return str(path)


class ServerProcess:
    """A server command running in its own process group, with its output collected."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.port = port
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,  # its own process group: killpg reaches its workers too
        )
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._closed = False
        self._readers = [
            threading.Thread(
                target=self._drain, args=(self.process.stdout, self._out), daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(self.process.stderr, self._err), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe: IO[bytes] | None, into: list[bytes]) -> None:
        assert pipe is not None
        into.extend(pipe)  # line by line, until the pipe closes

    @property
    def stdout(self) -> str:
        return b"".join(self._out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    @property
    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"

    def wait_listening(self, timeout: float = 15.0) -> None:
        """Connect attempts of at most 0.2 s each until the port accepts, the process ends, or
        ``timeout`` passes (then the test fails with the server's output)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited ({self.process.returncode}):\n{self.output}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"the server did not listen in time:\n{self.output}"
                    ) from None
                # A refused connect returns at once: wait for the process instead of spinning.
                try:
                    self.process.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass

    def interrupt(self) -> None:
        """SIGINT to the whole process group, as Ctrl-C in a terminal sends it."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or ``None`` when the process is still running after ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill whatever is left of the process group and collect the output (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        for reader in self._readers:
            reader.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class ChunkedDecoder:
    """Incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112 §7.1).

    ``feed()`` returns the chunk data decoded so far; ``done`` becomes true once the last chunk
    (``0``), the optional trailer section and its final CRLF have arrived.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # data bytes left in the current chunk
        self._state = "size"  # size | data | data-crlf | trailer
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out: list[bytes] = []
        while not self.done:
            if self._state == "size":
                line, sep, rest = self._buffer.partition(b"\r\n")
                if not sep:
                    break
                size = int(line.split(b";", 1)[0].strip(), 16)
                self._buffer = rest
                self._remaining = size
                self._state = "data" if size else "trailer"
            elif self._state == "data":
                if not self._buffer:
                    break
                taken = self._buffer[: self._remaining]
                out.append(taken)
                self._buffer = self._buffer[len(taken) :]
                self._remaining -= len(taken)
                if not self._remaining:
                    self._state = "data-crlf"
            elif self._state == "data-crlf":
                if len(self._buffer) < 2:
                    break
                assert self._buffer[:2] == b"\r\n", f"bad chunk end {self._buffer[:2]!r}"
                self._buffer = self._buffer[2:]
                self._state = "size"
            else:  # trailer: header lines until an empty line
                line, sep, rest = self._buffer.partition(b"\r\n")
                if not sep:
                    break
                self._buffer = rest
                if not line:
                    self.done = True
        return b"".join(out)


@dataclass
class BodyEnd:
    """How a response body ended, as the client saw it.

    ``how``: ``"terminator"`` (the chunked last chunk arrived: a clean end), ``"eof"`` (the
    connection closed without it; for a body without chunked coding or a length this is its
    only possible end), ``"reset"`` (ECONNRESET), ``"timeout"`` (nothing ended it in time).
    """

    how: str
    chunked: bool
    after: float  # seconds from the start of the read
    tail: bytes = b""  # the body bytes received during the read (decoded from chunks)
    raw_tail: bytes = b""  # the last raw bytes received from the socket

    @property
    def clean(self) -> bool:
        """The last chunk for a chunked body; a close (not a reset) for a body without framing."""
        return self.how == "terminator" if self.chunked else self.how == "eof"


@dataclass
class RawStream:
    """``GET`` of an event stream over a plain socket, HTTP/1.1."""

    port: int
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        request = (
            f"GET {self.target} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{extra}\r\n"
        )
        try:
            self._start(request.encode("latin-1"))
        except BaseException:
            self.sock.close()
            raise

    def _start(self, request: bytes) -> None:
        self.sock.sendall(request)
        self.parser = EventParser()
        self.events: list[MessageEvent] = []
        self.body = b""  # every body byte so far (after transfer decoding)
        self.raw = b""  # every byte after the response head, as received
        self.ended = False
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            assert data, f"the connection closed before the response head: {head!r}"
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.http_version, status, *_ = status_line.split(" ", 2)
        self.status = int(status)
        self.response_headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        self.chunked = "chunked" in self.response_headers.get("transfer-encoding", "").lower()
        self.decoder = ChunkedDecoder() if self.chunked else None
        self._take(rest)

    def _take(self, data: bytes) -> bytes:
        self.raw += data
        body = self.decoder.feed(data) if self.decoder is not None else data
        self.body += body
        self.events.extend(self.parser.feed(body))
        if self.decoder is not None and self.decoder.done:
            self.ended = True
        return body

    def read_events(self, count: int, timeout: float = 10.0) -> list[MessageEvent]:
        """Read until ``count`` events have arrived in total; returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            left = deadline - time.monotonic()
            assert left > 0, (
                f"{len(self.events)} of {count} events after {timeout} s: {self.body!r}"
            )
            assert not self.ended, f"the body ended after {len(self.events)} events: {self.body!r}"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            assert data, f"the connection closed after {len(self.events)} events: {self.raw!r}"
            self._take(data)
        return self.events

    def read_until(self, marker: bytes, count: int = 1, timeout: float = 10.0) -> None:
        """Read until ``marker`` is ``count`` times in the body (after transfer decoding)."""
        deadline = time.monotonic() + timeout
        while self.body.count(marker) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} after {timeout} s: {self.body!r}"
            assert not self.ended, f"the body ended without {marker!r}: {self.body!r}"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            assert data, f"the connection closed without {marker!r}: {self.raw!r}"
            self._take(data)

    def read_to_end(self, deadline: float) -> BodyEnd:
        """Read until the body ends or ``deadline`` (``time.monotonic()``) passes."""
        started = time.monotonic()
        before, raw_before = len(self.body), len(self.raw)

        def end(how: str) -> BodyEnd:
            return BodyEnd(
                how,
                self.chunked,
                time.monotonic() - started,
                self.body[before:],
                self.raw[raw_before:][-64:],
            )

        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return end("timeout")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return end("timeout")
            except ConnectionResetError:
                return end("reset")
            if not data:
                return end("eof")
            self._take(data)
        return end("terminator")

    def close(self) -> None:
        self.sock.close()


@contextmanager
def uvicorn_app(app: str, *options: str) -> Iterator[ServerProcess]:
    """``uvicorn APP --port <free port> OPTIONS``, listening; closed (killed if need be) after."""
    port = free_port()
    process = ServerProcess([bin_path("uvicorn"), app, "--port", str(port), *options], port)
    try:
        process.wait_listening()
        yield process
    finally:
        process.close()
