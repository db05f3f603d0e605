"""The hub benchmarks' load generator: server processes, SSE subscribers, a publisher.

Built to cost the client side as little as possible, so that the server is the bottleneck:
uvloop, one ``asyncio.Protocol`` per connection (no task, no stream objects), httptools to undo
HTTP/1.1 chunking in C, and a regular expression over each batch of complete frames to pull out
the publish timestamps. One subscriber per run (``checked=True``) also feeds every byte through
``ssehub.wire.EventParser`` and checks that it saw exactly the published events, in order.

Event data is ``n=<sequence> t=<monotonic ns at publish> xxx...`` (about 100 bytes), so a
receiver computes publish-to-receive latency from the bytes alone, whichever server sent them.
Servers run in child processes pinned to core 0 (``taskset``); this process pins itself to
core 1. Server CPU time comes from ``/proc/<pid>/stat``, resident memory from
``/proc/<pid>/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httptools

from ssehub.wire import EventParser

__all__ = [
    "KINDS",
    "Publisher",
    "Server",
    "Subscriber",
    "connect_many",
    "make_data",
    "percentile",
    "pin_load_generator",
    "raise_file_limit",
    "running_server",
]

HERE = Path(__file__).resolve().parent
KINDS = ("ssehub", "baseline")
TOPIC = "bench"
DATA_BYTES = 100
_STAMP = re.compile(rb"data: n=(\d+) t=(\d+) ")
_ID = re.compile(rb"(?:^|\n)id: ([^\r\n]*)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
# RST on close instead of FIN: no TIME_WAIT entries, so thousands of connections per round do
# not exhaust the ephemeral port range across rounds.
_LINGER_RESET = struct.pack("ii", 1, 0)


def make_data(seq: int, size: int = DATA_BYTES) -> str:
    """``size`` bytes of event data carrying a sequence number and the publish time."""
    head = f"n={seq} t={time.monotonic_ns()} "
    return head + "x" * max(0, size - len(head))


def percentile(values: array[int] | list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return float(ordered[index])


def raise_file_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (inherited by the servers); return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A server child process pinned to core 0."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_bytes(self) -> int:
        """The server's resident set size."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def can_pin() -> bool:
    """Whether servers and load generator can get a core each (two cores and ``taskset``)."""
    return len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None


def pin_load_generator() -> str:
    """Pin this process to core 1 (servers go to core 0); return a note for the output."""
    if not can_pin():
        return "not pinned (fewer than 2 cores or no taskset): results are not comparable"
    os.sched_setaffinity(0, {1})
    return "servers pinned to core 0, load generator to core 1"


def server_command(kind: str, port: int) -> list[str]:
    """The command line that starts ``kind`` (both pinned to core 0, default settings)."""
    pin = ["taskset", "-c", "0", sys.executable] if can_pin() else [sys.executable]
    if kind == "ssehub":
        return [*pin, "-m", "ssehub.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if kind in ("ssehub-app", "ssehub-app+middleware"):
        wrap = ["--wrap"] if kind.endswith("+middleware") else []
        return [*pin, str(HERE / "_hub_app_server.py"), "--port", str(port), *wrap]
    return [*pin, str(HERE / "baseline_broadcaster.py"), "--port", str(port)]


def server_env(kind: str) -> dict[str, str]:
    """The server's environment: stream limits lifted, and ``SSEHUB_BENCH_SRC`` (a source
    tree, e.g. an exported commit) put first on ``PYTHONPATH`` so that a fixed version of
    ssehub is measured while the working tree changes."""
    env = dict(os.environ)
    # Every connection comes from one address here, unlike real clients: lift the hub's
    # per-address and total stream limits (the only settings that differ from the defaults).
    env.setdefault("SSEHUB_MAX_CONNECTIONS", "1000000")
    env.setdefault("SSEHUB_MAX_CONNECTIONS_PER_ADDRESS", "1000000")
    source = env.get("SSEHUB_BENCH_SRC")
    if kind.startswith("ssehub") and source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def running_server(kind: str) -> Iterator[Server]:
    """Start a server, wait until it accepts connections, stop it (SIGINT) at the end."""
    port = _free_port()
    proc = subprocess.Popen(server_command(kind, port), env=server_env(kind))
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{kind} server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{kind} server did not start within 20 s") from None
                time.sleep(0.05)  # a harness waiting for a child to bind, bounded above
        yield Server(kind, port, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- subscribers


@dataclass
class Received:
    """What a group of subscribers received (shared, so one counter serves all of them)."""

    target: int = 0
    count: int = 0
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    done: asyncio.Event = field(default_factory=asyncio.Event)
    record: bool = True

    def reset(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.latencies_ns = array("q")
        self.done = asyncio.Event()
        if target == 0:
            self.done.set()


class Subscriber(asyncio.Protocol):
    """One ``GET /events`` stream, counting events and their latency as bytes arrive.

    Args:
        path: the request target.
        received: the shared tally.
        checked: also parse every byte with :class:`EventParser` and keep the sequences.
        last_event_id: sent as the ``Last-Event-ID`` header.
        rcvbuf: a small ``SO_RCVBUF`` for a subscriber that will stop reading.
    """

    def __init__(
        self,
        path: str,
        received: Received,
        *,
        checked: bool = False,
        last_event_id: str | None = None,
    ) -> None:
        self.path = path
        self.received = received
        self.checked = checked
        self.last_event_id = last_event_id
        self.parser = httptools.HttpResponseParser(self)
        self.event_parser = EventParser() if checked else None
        self.sequences: list[int] = []
        self.last_id: str | None = None
        self.headers_done = asyncio.Event()
        self.ended = asyncio.Event()
        self.status = 0
        self.transport: asyncio.Transport | None = None
        self._tail = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        extra = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id else ""
        request = f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.headers_done.set()
        self.ended.set()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done.set()

    def on_body(self, body: bytes) -> None:
        if self.event_parser is not None:
            for event in self.event_parser.feed(body):
                if event.data.startswith("n="):
                    self.sequences.append(int(event.data[2:].split(" ", 1)[0]))
                    self.last_id = event.id
        buffer = self._tail + body
        # A frame ends with a blank line: "\n\n" (ssehub) or "\r\n\r\n" (sse-starlette).
        cut = max(buffer.rfind(b"\n\n") + 2, buffer.rfind(b"\r\n\r\n") + 4)
        if cut < 4:
            self._tail = buffer
            return
        complete, self._tail = buffer[:cut], buffer[cut:]
        stamps = _STAMP.findall(complete)
        if not stamps:
            return
        received = self.received
        if self.event_parser is None:
            ids = _ID.findall(complete)
            if ids:
                self.last_id = ids[-1].decode()
        if received.record:
            now = time.monotonic_ns()
            received.latencies_ns.extend([now - int(stamp) for _seq, stamp in stamps])
        received.count += len(stamps)
        if received.count >= received.target:
            received.done.set()

    def on_message_complete(self) -> None:
        self.ended.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, subscriber: Subscriber, *, rcvbuf: int | None = None) -> Subscriber:
    """Open ``subscriber``'s connection (RST on close) and wait for the response headers."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.create_connection(lambda: subscriber, sock=sock)
    await asyncio.wait_for(subscriber.headers_done.wait(), 30)
    if subscriber.status != 200:
        raise SystemExit(f"GET {subscriber.path}: status {subscriber.status}")
    return subscriber


async def connect_many(
    port: int, count: int, received: Received, *, concurrency: int = 100
) -> list[Subscriber]:
    """Open ``count`` subscribers to the benchmark topic, ``concurrency`` at a time.

    The first one is ``checked`` (parsed with :class:`EventParser`).
    """
    limit = asyncio.Semaphore(concurrency)
    path = f"/events?topic={TOPIC}"

    async def one(index: int) -> Subscriber:
        async with limit:
            return await connect(port, Subscriber(path, received, checked=index == 0))

    return list(await asyncio.gather(*(one(i) for i in range(count))))


# --------------------------------------------------------------------------- publisher


class Publisher(asyncio.Protocol):
    """One keep-alive connection for ``POST /publish`` and ``GET /status``, one at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._body = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None

    port = 0

    @classmethod
    async def open(cls, port: int) -> Publisher:
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_connection(cls, "127.0.0.1", port)
        protocol.port = port
        return protocol

    async def _reopen(self) -> None:
        # uvicorn closes keep-alive connections idle for 5 s (its timeout_keep_alive).
        loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        await loop.create_connection(lambda: self, "127.0.0.1", self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError("server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        assert self._answer is not None
        self._answer.set_result((self.parser.get_status_code(), bytes(self._body)))
        self._body.clear()

    async def _request(self, head: str, body: bytes = b"") -> dict[str, object]:
        if self.transport is None or self.transport.is_closing():
            await self._reopen()
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(head.encode() + body)
        status, answer = await asyncio.wait_for(self._answer, 30)
        if status != 200:
            request_line = head.split("\r\n", 1)[0]
            raise SystemExit(f"{request_line}: {status} {answer!r}")
        document: dict[str, object] = json.loads(answer)
        return document

    async def publish(self, data: str) -> dict[str, object]:
        """Publish ``data`` to the benchmark topic; return the JSON answer."""
        body = json.dumps({"topic": TOPIC, "data": data}).encode()
        head = (
            "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return await self._request(head, body)

    async def connections(self) -> int:
        """The server's count of open event streams (``GET /status``)."""
        document = await self._request("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        count = document["connections"]
        assert isinstance(count, int)
        return count

    async def wait_connections(self, expected: int, timeout: float = 30) -> None:
        """Wait until the server counts ``expected`` streams (registration can trail headers)."""
        deadline = time.monotonic() + timeout
        while (count := await self.connections()) != expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"server counts {count} streams, expected {expected}")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
