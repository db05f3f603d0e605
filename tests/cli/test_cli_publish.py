"""``ssehub publish`` end to end against the real hub on a loopback port."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys

import pytest
from hub_server import HubServer
from pipes_kit import read_line

from ssehub.cli import main
from ssehub.client import HubClient, ReconnectPolicy
from ssehub.wire import MessageEvent

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(initial_retry=0.001, max_delay=0.01)
ANSWER = re.compile(r"id=(\S+) topics=(\S+) subscribers=(\d+)")


def published_after(url: str, topic: str, after: str, count: int) -> list[MessageEvent]:
    """The ``count`` events of ``topic`` after id ``after``, replayed from the hub's history."""
    with HubClient(url) as client, client.subscribe(topic, after, policy=FAST) as source:
        return [next(source) for _ in range(count)]


def marker(url: str, topic: str) -> str:
    with HubClient(url) as client:
        return client.publish(topic, "marker").id


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_publish_one_event(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    start = marker(hub.url, "chat")
    code = main(
        ["publish", "--url", hub.url, "chat", "hello\nworld", "--event", "greet", "--retry", "2000"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    match = ANSWER.fullmatch(out.strip())
    assert match is not None
    assert match.group(2, 3) == ("chat", "0")
    (event,) = published_after(hub.url, "chat", start, 1)
    assert (event.id, event.event, event.data) == (match.group(1), "greet", "hello\nworld")


def test_url_from_the_environment(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSEHUB_URL", hub.url)
    start = marker(hub.url, "env")
    assert main(["publish", "env", "via env"]) == 0
    assert [e.data for e in published_after(hub.url, "env", start, 1)] == ["via env"]
    capsys.readouterr()


def test_stdin_is_one_event_without_its_final_newline(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = marker(hub.url, "in")
    feed_stdin(monkeypatch, "line 1\nline \u2026\n".encode())
    assert main(["publish", "--url", hub.url, "in", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert [e.data for e in published_after(hub.url, "in", start, 1)] == ["line 1\nline \u2026"]


def test_stdin_lines_are_one_event_each(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = marker(hub.url, "lines")
    feed_stdin(monkeypatch, b"a\n\nb\r\nc")
    assert main(["publish", "--url", hub.url, "lines", "-", "--lines", "-e", "row"]) == 0
    answers = [ANSWER.fullmatch(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 3
    events = published_after(hub.url, "lines", start, 3)
    assert [(e.data, e.event) for e in events] == [("a", "row"), ("b", "row"), ("c", "row")]
    assert [e.id for e in events] == [m.group(1) for m in answers if m is not None]


def test_stdin_and_inline_lines_split_alike_on_cr_lf_and_crlf(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lone CR ends a line (it used to stay in the data, and join "b" and "c"); CRLF is one end.
    raw = "a\rb\r\n\rc\u2026\nd\r"
    start = marker(hub.url, "crlines")
    feed_stdin(monkeypatch, raw.encode())
    assert main(["publish", "--url", hub.url, "crlines", "-", "--lines"]) == 0
    assert main(["publish", "--url", hub.url, "crlines", raw, "--lines"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    events = published_after(hub.url, "crlines", start, 8)
    assert [e.data for e in events] == ["a", "b", "c\u2026", "d"] * 2


def test_inline_data_lines(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    start = marker(hub.url, "inline")
    assert main(["publish", "--url", hub.url, "inline", "x\ny", "--lines"]) == 0
    assert [e.data for e in published_after(hub.url, "inline", start, 2)] == ["x", "y"]
    capsys.readouterr()


def test_rejected_publish_is_one_clear_line(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--url", hub.url, "bad topic!", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("ssehub publish: the hub refused: ")
    assert "(invalid_topic, HTTP 400)" in err

    assert main(["publish", "--url", hub.url, "t", "x", "--event", "a\rb"]) == 1
    assert "invalid_event" in capsys.readouterr().err


def test_unreachable_hub_and_bad_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert main(["publish", "--url", url, "t", "x", "--attempts", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ssehub publish: cannot reach the hub at ")
    assert len(err.splitlines()) == 1

    assert main(["publish", "--url", "ftp://127.0.0.1", "t", "x"]) == 2
    assert "only http and https" in capsys.readouterr().err

    feed_stdin(monkeypatch, b"\xff\xfe")
    assert main(["publish", "--url", "http://127.0.0.1:1", "t", "-"]) == 2
    assert capsys.readouterr().err == "ssehub publish: standard input is not UTF-8 text\n"


def publish_lines_process(hub: HubServer, topic: str) -> subprocess.Popen[bytes]:
    """`ssehub publish TOPIC - --lines` as a child process with piped standard streams."""
    return subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "publish", "--url", hub.url, topic, "-", "--lines"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_stdin_lines_are_published_as_they_arrive(hub: HubServer) -> None:
    # `tail -f log | ssehub publish logs - --lines`: each line goes out while stdin stays open.
    start = marker(hub.url, "logs")
    with publish_lines_process(hub, "logs") as child:
        try:
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(b"first\n")
            child.stdin.flush()
            answer = ANSWER.fullmatch(read_line(child.stdout, 10).decode().strip())
            assert answer is not None  # published before the next line even exists
            out, err = child.communicate("second \u2026\n".encode(), timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 0, err
    assert len(out.splitlines()) == 1
    events = published_after(hub.url, "logs", start, 2)
    assert [e.data for e in events] == ["first", "second \u2026"]
    assert events[0].id == answer.group(1)


def test_a_line_ending_in_cr_is_published_before_more_input(hub: HubServer) -> None:
    # The CR alone ends the line: no wait for a possible LF; the LF that follows is not a line.
    start = marker(hub.url, "crlogs")
    with publish_lines_process(hub, "crlogs") as child:
        try:
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(b"first\r")
            child.stdin.flush()
            answer = ANSWER.fullmatch(read_line(child.stdout, 10).decode().strip())
            assert answer is not None
            out, err = child.communicate(b"\nsecond\r\n", timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 0, err
    assert len(out.splitlines()) == 1
    events = published_after(hub.url, "crlogs", start, 2)
    assert [e.data for e in events] == ["first", "second"]
    assert events[0].id == answer.group(1)


def test_a_key_makes_a_repeated_command_publish_once(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    start = marker(hub.url, "keyed")
    command = ["publish", "--url", hub.url, "keyed", "paid", "--idempotency-key", "order-7"]
    assert main(command) == 0
    assert main(command) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.split()[0] == second.split()[0]  # the same id=
    end = marker(hub.url, "keyed")
    events = published_after(hub.url, "keyed", start, 2)
    assert [(e.data, e.id) for e in events] == [("paid", first.split()[0][3:]), ("marker", end)]

    # The same key with another event: refused, nothing published.
    assert (
        main(["publish", "--url", hub.url, "keyed", "other", "--idempotency-key", "order-7"]) == 1
    )
    assert "(idempotency_key_reused, HTTP 409)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--idempotency-key", "k", "--lines"], "cannot go with --lines"),
        (["--idempotency-key", "has space"], "--idempotency-key: invalid idempotency key"),
        (["--attempts", "0"], "--attempts must be at least 1"),
    ],
    ids=["key-with-lines", "bad-key", "no-attempts"],
)
def test_key_and_attempt_options_are_checked(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["publish", "--url", "http://127.0.0.1:1", "t", "x", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


def test_retries_are_announced_and_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: every attempt is refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert main(["publish", "--url", url, "t", "x", "--attempts", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("ssehub publish: attempt 1 failed: cannot reach the hub")
    assert err[0].endswith("with the same idempotency key")
    assert err[1].startswith("ssehub publish: cannot reach the hub at ")


def test_the_socket_path_retries_a_command_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    from ssehub import IngestError
    from ssehub.cli.publish import _send_with_retry
    from ssehub.client import PublishRetry

    class Flaky:
        def __init__(self, *errors: IngestError) -> None:
            self.errors = list(errors)
            self.sent: list[dict[str, object]] = []

        def send(self, command: dict[str, object]) -> dict[str, object]:
            self.sent.append(dict(command))
            if self.errors:
                raise self.errors.pop(0)
            return {"ok": True, "id": "e-1"}

    policy = PublishRetry(initial_delay=0.001, max_delay=0.01)
    command = {"command": "publish", "topic": "t", "data": "x", "idempotency_key": "k"}
    ingest = Flaky(
        IngestError("outcome_unknown", "no answer"),
        IngestError("unavailable", "down"),
        IngestError("connection", "reset"),
    )
    assert _send_with_retry(ingest, command, policy) == {"ok": True, "id": "e-1"}
    assert ingest.sent == [command] * 4
    assert len(capsys.readouterr().err.splitlines()) == 3

    refused = Flaky(IngestError("invalid_topic", "bad"))
    with pytest.raises(IngestError):
        _send_with_retry(refused, command, policy)
    assert len(refused.sent) == 1


PUBLISH = (sys.executable, "-m", "ssehub.cli", "publish")


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX pipes")
def test_a_closed_stdout_does_not_stop_or_fail_the_publishing(hub: HubServer) -> None:
    # `ssehub publish ... | head -0`: the answers have no reader; every line is still
    # published and the exit code says so (it used to be 1, with a traceback, after the first).
    start = marker(hub.url, "piped")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the first answer
    try:
        child = subprocess.run(
            [*PUBLISH, "--url", hub.url, "--lines", "piped", "one\ntwo\nthree"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert child.returncode == 0, child.stderr
    assert b"Traceback" not in child.stderr
    assert b"Exception ignored" not in child.stderr
    events = published_after(hub.url, "piped", start, 3)
    assert [event.data for event in events] == ["one", "two", "three"]
