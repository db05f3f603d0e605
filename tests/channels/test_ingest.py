"""Socket ingest: JSON lines over Unix and TCP sockets, replies, errors, bounded lines, CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from ssehub._exceptions import EventTooLarge, IngestError
from ssehub._excgroups import collapse_excgroups
from ssehub.broker import Broker
from ssehub.channels import ChannelRegistry, IngestClient, Message
from ssehub.channels._ingest import IngestHandler, LineReader, serve_ingest
from ssehub.cli import main
from ssehub.hub import HubSettings, create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def short_dir() -> Iterator[str]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="ssehub-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def ingest(settings: HubSettings) -> AsyncIterator[tuple[Broker, ChannelRegistry, list[str]]]:
    async with Broker() as broker, ChannelRegistry() as registry, anyio.create_task_group() as tg:
        addresses = await tg.start(serve_ingest, broker, registry, settings)
        yield broker, registry, addresses
        tg.cancel_scope.cancel()


class Connection:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, 1 << 20)

    async def ask(self, line: bytes | dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(line).encode() if isinstance(line, dict) else line
        await self.stream.send(raw + b"\n")
        reply = await self.reader.readline()
        assert reply is not None
        result: dict[str, Any] = json.loads(reply)
        return result


async def test_unix_socket_commands_and_mode(short_dir: str) -> None:
    path = os.path.join(short_dir, "hub.sock")
    async with ingest(HubSettings(socket=path)) as (broker, registry, addresses):
        assert addresses == [f"unix:{path}"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        channel = await registry.create("jobs")
        worker = channel.add_listener("w1")
        with anyio.fail_after(10):
            async with broker.subscribe("orders") as subscription:
                stream = await anyio.connect_unix(path)
                async with stream:
                    conn = Connection(stream)
                    published = await conn.ask(
                        {"command": "publish", "topic": "orders", "data": {"n": 1}, "event": "new"}
                    )
                    assert published["ok"] is True
                    (item,) = await subscription.receive()
                    assert (item.id, item.event.event, item.event.data) == (
                        published["id"],
                        "new",
                        '{"n":1}',
                    )
                    sent = await conn.ask(
                        {"command": "broadcast", "channel": "jobs", "type": "job", "payload": 1}
                    )
                    direct = await conn.ask(
                        {"command": "dispatch", "channel": "jobs", "listener": "w1", "payload": 2}
                    )
                    assert sent["ok"]
                    assert direct["ok"]
                # Let the server see the EOF before it is cancelled: anyio's asyncio UNIX
                # streams can raise InvalidStateError when a read is cancelled while the
                # socket is readable (agronholm/anyio#1267 family); not a hub behaviour.
                await anyio.wait_all_tasks_blocked()
        assert await channel.deliver_next("w1") == Message("job", 1)
        message = await channel.deliver_next("w1")
        assert (message, message.id) == (Message("message", 2), direct["id"])
        assert worker.last_event_id == direct["id"]
    assert not os.path.exists(path)  # removed at shutdown


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"command": "explode"}', "invalid_body"),
        (b'{"topic": "t", "data": 1}', "invalid_body"),
        (b'{"command": "publish", "data": 1}', "missing_topic"),
        (b'{"command": "publish", "topic": "bad topic", "data": 1}', "invalid_topic"),
        (b'{"command": "publish", "topic": "t", "data": NaN}', "invalid_json"),
        (b'{"command": "publish", "topic": "t", "data": 1, "event": "ssehub.x"}', "reserved_event"),
        (b'{"command": "broadcast", "channel": "nope"}', "unknown_channel"),
        (b'{"command": "broadcast", "channel": 3}', "invalid_name"),
        (b'{"command": "broadcast", "channel": "jobs", "type": "ssehub.x"}', "reserved_event"),
        (b'{"command": "broadcast", "channel": "jobs", "type": "a\\nb"}', "invalid_event"),
        (b'{"command": "broadcast", "channel": "jobs", "payload": NaN}', "invalid_data"),
        (b'{"command": "broadcast", "channel": "jobs", "listener": "x"}', "unknown_field"),
        (b'{"command": "dispatch", "channel": "jobs", "listener": "nope"}', "unknown_listener"),
        (b'{"command": "dispatch", "channel": "jobs"}', "invalid_name"),
    ],
)
async def test_errors_keep_the_connection_usable(line: bytes, code: str) -> None:
    async with ingest(HubSettings(ingest_port=0)) as (_, registry, addresses):
        await registry.create("jobs")
        port = int(addresses[0].rsplit(":", 1)[1])
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                conn = Connection(stream)
                reply = await conn.ask(line)
                assert (reply["ok"], reply["error"]) == (False, code)
                assert reply["detail"]
                ok = await conn.ask({"command": "publish", "topic": "t", "data": "still here"})
                assert ok["ok"] is True


async def test_oversize_line_is_refused_and_skipped() -> None:
    settings = HubSettings(ingest_port=0, max_body_size=1024)
    async with ingest(settings) as (_, _registry, addresses):
        port = int(addresses[0].rsplit(":", 1)[1])
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                conn = Connection(stream)
                huge = b'{"command": "publish", "topic": "t", "data": "' + b"x" * 300_000 + b'"}'
                reply = await conn.ask(huge)
                assert (reply["ok"], reply["error"]) == (False, "line_too_long")
                await stream.send(b"\n\r\n")  # blank lines get no answer
                ok = await conn.ask({"command": "publish", "topic": "t", "data": "after"})
                assert ok["ok"] is True


class Chunks(anyio.abc.ByteStream):
    """A byte stream that hands out scripted chunks and records the reader's buffer size."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.reader: LineReader | None = None
        self.most_buffered = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.reader is not None:
            self.most_buffered = max(self.most_buffered, len(self.reader._buffer))
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def send(self, item: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


async def test_line_reader_never_holds_an_oversize_line() -> None:
    chunk = b"y" * 4096
    stream = Chunks([b"first\nsec", b"ond\n", *([chunk] * 1000), b"tail\nlast"])
    reader = stream.reader = LineReader(stream, 10_000)
    assert await reader.readline() == b"first"
    assert await reader.readline() == b"second"
    with pytest.raises(EventTooLarge):
        await reader.readline()
    assert stream.most_buffered <= 10_000 + len(chunk)  # ~4 MB line, at most ~14 KB held
    assert await reader.readline() == b"last"  # a final line without \n still counts
    assert await reader.readline() is None


async def test_hub_runs_the_ingest_and_the_cli_publishes(
    short_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(short_dir, "hub.sock")
    app = create_app(HubSettings(socket=path, socket_mode=0o660))
    broker = app.state.hub.broker
    with anyio.fail_after(20):
        async with app.router.lifespan_context(app):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            async with broker.subscribe("logs") as subscription:
                argv = ["publish", "--socket", path, "logs", "one\ntwo", "--lines", "-e", "log"]
                code = await anyio.to_thread.run_sync(main, argv)
                assert code == 0
                items = await subscription.receive()
                if len(items) < 2:
                    items += await subscription.receive()
            refused = ["publish", "--socket", path, "bad topic", "x"]
            assert await anyio.to_thread.run_sync(main, refused) == 1
            with IngestClient(path) as client:
                with pytest.raises(IngestError) as info:
                    await anyio.to_thread.run_sync(
                        client.send, {"command": "broadcast", "channel": "nope"}
                    )
                assert info.value.code == "unknown_channel"
    out, err = capsys.readouterr()
    assert [(i.event.event, i.event.data) for i in items] == [("log", "one"), ("log", "two")]
    assert out.splitlines() == [f"id={i.id} topics=logs" for i in items]
    assert "invalid topic" in err
    assert not os.path.exists(path)


def test_ingest_client_errors() -> None:
    with pytest.raises(IngestError) as info:
        IngestClient("/nonexistent/ssehub.sock").connect()
    assert info.value.code == "connection"
    for bad in ("", "tcp://nohost", "tcp://:80"):
        with pytest.raises(ValueError):
            IngestClient(bad)


def test_cli_socket_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    command = ["publish", "--socket", "/nonexistent/ssehub.sock", "t", "x", "--attempts", "1"]
    assert main(command) == 1
    assert "cannot connect" in capsys.readouterr().err


async def test_a_bug_costs_one_connection_not_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = IngestHandler.execute

    async def buggy(self: IngestHandler, line: bytes) -> dict[str, Any]:
        if line == b'"boom"':
            raise RuntimeError("a bug")
        return await original(self, line)

    monkeypatch.setattr(IngestHandler, "execute", buggy)
    async with ingest(HubSettings(ingest_port=0)) as (_, _registry, addresses):
        port = int(addresses[0].rsplit(":", 1)[1])
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b'"boom"\n')
                assert await LineReader(stream, 1024).readline() is None  # closed by the hub
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                reply = await Connection(stream).ask(
                    {"command": "publish", "topic": "t", "data": 1}
                )
                assert reply["ok"] is True
    assert "an ingest connection failed" in caplog.text


async def second_ingest(path: str) -> None:
    async with ingest(HubSettings(socket=path)):
        pytest.fail("a second ingest bound a live socket path")


async def test_a_live_socket_path_is_refused_and_left_to_its_owner(short_dir: str) -> None:
    # Binding replaces a socket file: a second hub on the same path (a rolling restart)
    # used to take it silently, and the first then removed the second's file as it stopped.
    path = os.path.join(short_dir, "hub.sock")
    async with ingest(HubSettings(socket=path)):
        inode = os.stat(path).st_ino
        with (
            pytest.raises(OSError, match="another process is listening") as refused,
            collapse_excgroups(),  # the ingest's task group wraps it
        ):
            await second_ingest(path)
        assert refused.value.errno == errno.EADDRINUSE
        assert os.stat(path).st_ino == inode  # the live hub's file, untouched
        async with await anyio.connect_unix(path) as stream:  # and still served
            reply = await Connection(stream).ask({"command": "publish", "topic": "t", "data": 1})
            assert reply["ok"] is True
        # As in test_unix_socket_commands_and_mode: let the server see the EOF first.
        await anyio.wait_all_tasks_blocked()
    assert not os.path.exists(path)  # removed by its owner on the way out


async def test_a_stale_socket_file_is_replaced(short_dir: str) -> None:
    path = os.path.join(short_dir, "hub.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening: what a killed process leaves
    stale.close()
    async with ingest(HubSettings(socket=path)) as (_, _, addresses):
        assert addresses == [f"unix:{path}"]


async def test_a_socket_that_replaced_ours_is_not_removed(short_dir: str) -> None:
    path = os.path.join(short_dir, "hub.sock")
    async with ingest(HubSettings(socket=path)):
        os.unlink(path)
        other = socket.socket(socket.AF_UNIX)
        other.bind(path)  # another process's socket now lives at the path
    try:
        assert os.path.exists(path)
    finally:
        other.close()


async def test_a_line_begun_and_left_unfinished_times_out(short_dir: str) -> None:
    # A client could hold a partial line of max_body_size (and a task) for ever: 64 such
    # connections held 70 MiB. A quiet connection between lines is not cut.
    path = os.path.join(short_dir, "hub.sock")
    async with ingest(HubSettings(socket=path, body_timeout=0.2)):
        with anyio.fail_after(10):
            async with await anyio.connect_unix(path) as stream:
                connection = Connection(stream)
                await anyio.sleep(0.4)  # idle between lines, past the timeout: still served
                reply = await connection.ask({"command": "publish", "topic": "t", "data": 1})
                assert reply["ok"] is True
                await stream.send(b'{"command": "publish", "topic": "t", "da')
                timed_out = await connection.reader.readline()
                assert timed_out is not None
                assert json.loads(timed_out) == {
                    "ok": False,
                    "error": "line_timeout",
                    "detail": "no byte of the line for 0.2 s",
                }
                assert await connection.reader.readline() is None  # then closed
            await anyio.wait_all_tasks_blocked()


async def test_connections_beyond_the_limit_are_answered_and_closed(short_dir: str) -> None:
    path = os.path.join(short_dir, "hub.sock")
    command = {"command": "publish", "topic": "t", "data": 1}
    async with ingest(HubSettings(socket=path, max_pending_connections=2)):
        with anyio.fail_after(10):
            first = await anyio.connect_unix(path)
            second = await anyio.connect_unix(path)
            for stream in (first, second):
                assert (await Connection(stream).ask(command))["ok"] is True
            async with await anyio.connect_unix(path) as third:
                refused = await LineReader(third, 1 << 20).readline()
                assert refused is not None
                assert json.loads(refused)["error"] == "too_many_connections"
            await first.aclose()
            await anyio.wait_all_tasks_blocked()  # the server sees the EOF: a place is free
            async with await anyio.connect_unix(path) as fourth:
                assert (await Connection(fourth).ask(command))["ok"] is True
            await second.aclose()
            await anyio.wait_all_tasks_blocked()
