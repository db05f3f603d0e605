"""``ssehub listen`` end to end against the real hub on a loopback port.

The command runs in a thread (``main([...])``) or, for Ctrl-C, in a child process. Tests wait on
the hub's ``stream_opened`` signal and on ``--count`` ending the command; nothing sleeps.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from hub_server import HubServer
from pipes_kit import read_line, read_to_end

from ssehub import ConnectionFailed
from ssehub.cli import main
from ssehub.cli.listen import _reason, format_event
from ssehub.client import HubClient
from ssehub.wire import MessageEvent

pytestmark = pytest.mark.integration

FAST = ["--reconnect-delay", "0.02"]


@contextmanager
def listening(argv: list[str]) -> Iterator[list[int]]:
    """Run ``ssehub listen`` in a thread; the list gets its exit code once it has ended."""
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(main(["listen", *argv])))
    thread.start()
    try:
        yield code
    finally:
        thread.join(15)
        assert not thread.is_alive(), "ssehub listen did not end"


def publish(url: str, topic: str, data: str, event: str | None = None) -> str:
    with HubClient(url) as client:
        return client.publish(topic, data, event=event).id


class TTYWriter(io.StringIO):
    """Standard output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class StderrWatch(io.StringIO):
    """Standard error that signals when a line containing ``needle`` is written."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def write(self, text: str) -> int:
        if self.needle in text:
            self.seen.set()
        return super().write(text)


# -- output ------------------------------------------------------------------------------------


def test_readable_output(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    with listening(["--url", hub.url, "chat", "--count", "2"]) as code:
        hub.stream_opened()
        first = publish(hub.url, "chat", "hello")
        second = publish(hub.url, "chat", "two\nlines \x1b[31m", event="note")
    assert code == [0]
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{first} message hello",
        f"{second} note two",
        "    lines \\x1b[31m",  # escaped: an event cannot drive the terminal
    ]
    assert err == f"ssehub listen: connected to {hub.url} (topics chat)\n"


def test_json_lines_and_several_topics(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    with listening(["--url", hub.url, "a", "b", "--json", "-n", "2"]) as code:
        hub.stream_opened()
        first = publish(hub.url, "a", "x")
        second = publish(hub.url, "b", '{"k": 1}', event="obj")
    assert code == [0]
    out, err = capsys.readouterr()
    assert err == f"ssehub listen: connected to {hub.url} (topics a, b)\n"
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"id": first, "event": "message", "data": "x"},
        {"id": second, "event": "obj", "data": '{"k": 1}'},
    ]


def test_colour_only_on_a_terminal_and_without_no_color(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    first = publish(hub.url, "c", "x")
    publish(hub.url, "c", "y")
    terminal = TTYWriter()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["listen", "--url", hub.url, "c", "--last-event-id", first, "-n", "1"]) == 0
    assert "\x1b[1;36mmessage\x1b[0m y" in terminal.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    plain = TTYWriter()
    monkeypatch.setattr(sys, "stdout", plain)
    assert main(["listen", "--url", hub.url, "c", "--last-event-id", first, "-n", "1"]) == 0
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue().endswith(" message y\n")

    monkeypatch.delenv("NO_COLOR")
    json_out = TTYWriter()
    monkeypatch.setattr(sys, "stdout", json_out)
    assert main(["listen", "--url", hub.url, "c", "--last-event-id", first, "-n1", "--json"]) == 0
    assert "\x1b" not in json_out.getvalue()


def test_format_event_forms() -> None:
    event = MessageEvent("a\nb", "t\x07", "9")
    assert format_event(event) == "9 t\\x07 a\n    b"
    assert format_event(MessageEvent("x")) == "- message x"
    assert json.loads(format_event(event, as_json=True)) == {
        "id": "9",
        "event": "t\x07",
        "data": "a\nb",
    }
    coloured = format_event(event, colour=True)
    assert coloured.startswith("\x1b[2m9\x1b[0m \x1b[1;36mt\\x07\x1b[0m a")


# -- resuming and reconnecting -----------------------------------------------------------------


def test_last_event_id_resumes_from_history(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [publish(hub.url, "h", f"e{n}") for n in range(4)]
    assert main(["listen", "--url", hub.url, "h", "--last-event-id", ids[1], "-n", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{ids[2]} message e2", f"{ids[3]} message e3"]


def test_keeps_going_across_a_hub_restart(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    restarted: HubServer | None = None
    try:
        with listening(["--url", hub.url, "r", "-n", "3", *FAST]) as code:
            hub.stream_opened()
            before = publish(hub.url, "r", "before")
            hub.stop()
            restarted = HubServer(port=hub.port).start()
            restarted.stream_opened()  # the listener is back, resuming with Last-Event-ID
            after = publish(restarted.url, "r", "after")
    finally:
        # --count 3 ends the command after "after"; only then may the new hub stop.
        if restarted is not None:
            restarted.stop()
    assert code == [0]
    out, err = capsys.readouterr()
    # The new hub (memory history) does not know the old id: it says so with a reset event
    # instead of silently resuming, and the listener shows it; then live events flow again.
    assert out.splitlines() == [
        f"{before} message before",
        f'{before} ssehub.reset {{"reason":"unknown"}}',
        f"{after} message after",
    ]
    assert err.startswith(f"ssehub listen: connected to {hub.url} (topics r)\n"), err
    assert "ssehub listen: the hub ended the stream; reconnecting in" in err, err
    # Said once the stream is back, so a quiet terminal is not mistaken for a lost hub.
    assert err.endswith(f"ssehub listen: reconnected, resuming after {before}\n"), err


def test_wait_keeps_trying_until_the_hub_comes_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = reserved.getsockname()[1]
    watch = StderrWatch("cannot connect")
    monkeypatch.setattr(sys, "stderr", watch)
    url = f"http://127.0.0.1:{port}"
    late: HubServer | None = None
    try:
        with listening(["--url", url, "w", "--wait", "-n", "1", *FAST]) as code:
            assert watch.seen.wait(10), "no reconnect notice"
            reserved.close()
            late = HubServer(port=port).start()
            late.stream_opened()
            ident = publish(late.url, "w", "finally")
    finally:
        reserved.close()
        if late is not None:
            late.stop()
    assert code == [0]
    assert capsys.readouterr().out == f"{ident} message finally\n"
    assert "cannot connect (" in watch.getvalue()


# -- errors ------------------------------------------------------------------------------------


def test_unreachable_hub_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert main(["listen", "--url", url, "t"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ssehub listen: cannot reach the hub at {url}: ")
    assert len(err.splitlines()) == 1


def test_bad_url_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["listen", "--url", "ftp://127.0.0.1", "t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssehub listen: invalid URL")
    assert len(err.splitlines()) == 1
    assert main(["listen", "--url", "http://127.0.0.1:1", "t", "--last-event-id", "a\nb"]) == 2
    assert "must not contain" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["listen", "t", "--count", "0"])
    assert info.value.code == 2


def test_refused_subscription_is_one_line(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["listen", "--url", hub.url, "bad topic!"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ssehub listen: the server answered HTTP 400")
    assert len(err.splitlines()) == 1


# -- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_ctrl_c_exits_130_without_a_traceback(hub: HubServer) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NO_COLOR", None)
    with subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "listen", "--url", hub.url, "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as child:
        try:
            hub.stream_opened()
            ident = publish(hub.url, "k", "seen")
            assert child.stdout is not None
            # A pipe is not a terminal: plain text, no colour codes.
            assert read_line(child.stdout, 10) == f"{ident} message seen\n".encode()
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 130
    assert b"Traceback" not in err


def test_reconnect_notices_name_the_cause() -> None:
    assert _reason(None, 45.0) == "the hub ended the stream"
    assert _reason(httpx.ReadTimeout("timed out"), 45.0) == "no data for 45 s"
    assert _reason(httpx.ConnectError("refused"), 45.0) == "cannot connect (refused)"
    assert _reason(httpx.ConnectTimeout("slow"), None) == "cannot connect (slow)"
    assert _reason(httpx.RemoteProtocolError("peer closed"), 1.0) == (
        "connection lost (peer closed)"
    )
    assert _reason(httpx.WriteTimeout(""), None) == "connection lost (WriteTimeout)"
    assert _reason(ConnectionFailed("the server answered HTTP 503", 503), 1.0) == (
        "the server answered HTTP 503"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX pipes")
def test_a_closed_pipe_ends_quietly(hub: HubServer) -> None:
    # `ssehub listen t | head -1`: once the reader is gone, exit 0 without a traceback.
    with subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "listen", "--url", hub.url, "p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stderr is not None
            hub.stream_opened()
            ident = publish(hub.url, "p", "one")
            assert read_line(child.stdout, 10) == f"{ident} message one\n".encode()
            child.stdout.close()  # what `head -1` does after its line
            publish(hub.url, "p", "two")
            err = read_to_end(child.stderr, 10)
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
    assert b"Traceback" not in err
    assert b"Exception ignored" not in err
