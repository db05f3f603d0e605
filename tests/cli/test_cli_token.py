"""``--token`` and ``SSEHUB_TOKEN``: every command sends the hub credential as a bearer token."""

from __future__ import annotations

import pytest
from hub_server import HubServer

from ssehub.cli import main
from ssehub.client._hub import token_headers

pytestmark = pytest.mark.integration


def test_every_command_sends_the_token(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSEHUB_TOKEN", raising=False)
    assert main(["publish", "--url", hub.url, "--token", "k1", "t", "x"]) == 0
    assert main(["status", "--url", hub.url, "--token", "k2"]) == 0
    monkeypatch.setenv("SSEHUB_TOKEN", "k3")
    assert main(["listen", "--url", hub.url, "t", "--last-event-id", "0", "-n", "1"]) == 0
    assert main(["publish", "--url", hub.url, "--token", "k4", "t", "y"]) == 0  # flag wins
    capsys.readouterr()
    assert hub.authorizations == [
        ("/publish", b"Bearer k1"),
        ("/status", b"Bearer k2"),
        ("/events", b"Bearer k3"),
        ("/publish", b"Bearer k4"),
    ]


def test_no_token_sends_no_header(
    hub: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSEHUB_TOKEN", "")
    assert main(["status", "--url", hub.url]) == 0
    capsys.readouterr()
    assert hub.authorizations == [("/status", None)]


@pytest.mark.parametrize("command", ["publish", "listen", "status"])
def test_malformed_token_is_a_usage_error(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"publish": ["t", "x"], "listen": ["t"], "status": []}[command]
    assert main([command, "--url", "http://127.0.0.1:1", "--token", "a b", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"ssehub {command}: the token must not contain whitespace or control characters\n"


def test_token_headers() -> None:
    assert token_headers(None, {}) == {}
    assert token_headers("", {"SSEHUB_TOKEN": "e"}) == {"Authorization": "Bearer e"}
    assert token_headers("f", {"SSEHUB_TOKEN": "e"}) == {"Authorization": "Bearer f"}
    with pytest.raises(ValueError, match="whitespace"):
        token_headers("a\nb", {})
