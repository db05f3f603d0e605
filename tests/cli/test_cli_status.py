"""``ssehub status`` end to end against the real hub, and its table rendering."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from hub_server import HubServer

from ssehub.cli import main
from ssehub.cli.status import format_status
from ssehub.client import EventSource, HubClient, ReconnectPolicy
from ssehub.wire import MessageEvent

pytestmark = pytest.mark.integration


def test_status_table_shows_topics_subscribers_and_history(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with HubClient(hub.url) as client:
        client.publish("chat", "a")
        client.publish("chat", "b")
        client.publish("news", "c")
    source: EventSource[MessageEvent] = EventSource(
        f"{hub.url}/events?topic=chat", policy=ReconnectPolicy(initial_retry=0.01)
    )
    reader = threading.Thread(target=lambda: list(source))
    reader.start()
    try:
        hub.stream_opened()
        assert main(["status", "--url", hub.url]) == 0
    finally:
        source.close()
        reader.join(5)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"hub          {hub.url}"
    assert lines[1].startswith("uptime       ")
    assert "connections  1" in lines
    header = lines.index("TOPIC  SUBSCRIBERS  HISTORY")
    assert lines[header + 1].split() == ["chat", "1", "2"]
    assert lines[header + 2].split() == ["news", "0", "1"]
    assert lines[-1].startswith("totals: published 3, ")
    assert ", subscribed topics 1," in lines[-1]  # not the table's two topics


def test_status_json(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    with HubClient(hub.url) as client:
        client.publish("t", "x")
    assert main(["status", "--url", hub.url, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["topics"]["t"].pop("history_bytes") > 0  # no authentication: shown to all
    assert document["topics"] == {"t": {"subscribers": 0, "history": 1}}
    assert document["connections"] == 0


def test_status_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert main(["status", "--url", f"http://127.0.0.1:{sock.getsockname()[1]}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ssehub status: cannot reach the hub at ")
    assert len(err.splitlines()) == 1
    assert main(["status", "--url", "not a url"]) == 2
    assert capsys.readouterr().err.startswith("ssehub status: invalid URL")


def test_format_status_tolerates_any_document() -> None:
    text = format_status(
        "http://h", {"uptime": 3725, "connections": 0, "version": "9", "topics": {}}
    )
    assert text.splitlines() == [
        "hub          http://h",
        "uptime       1h 02m 05s",
        "connections  0",
        "version      9",
        "",
        "no topics",
    ]
    assert format_status("http://h", {"uptime": 75.0}).splitlines()[1] == "uptime  1m 15s"
    assert format_status("http://h", {"uptime": 2.25}).splitlines()[1] == "uptime  2.2s"
    odd = format_status("u", {"topics": {"z": 3, "a": {"subscribers": None}}})
    assert [line.split() for line in odd.splitlines()[-3:]] == [
        ["TOPIC", "SUBSCRIBERS", "HISTORY"],
        ["a", "-", "-"],
        ["z", "3", "-"],
    ]
    assert "totals" not in odd


def test_status_error_answer_is_one_line(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A URL that is not the hub's root: the hub answers its JSON 404, shown as one line.
    assert main(["status", "--url", f"{hub.url}/nope"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "ssehub status: the hub refused: no such endpoint: /nope/status (not_found, HTTP 404)\n"
    )
