"""``ssehub serve --auth jwt`` as a real process on 127.0.0.1: the log says so, tokens count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from integration.test_hub_server import TIMEOUT, free_port, hub_process

from .support import SECRET, token

pytestmark = pytest.mark.integration


def test_serve_with_jwt_auth(tmp_path: Path) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text(SECRET + "\n")
    port = free_port()
    args = ("--port", str(port), "--auth", "jwt", "--jwt-key-file", str(key_file))
    with hub_process(*args) as hub:
        url = hub.wait_ready()
        assert "authentication is ON (JWT HS256); anonymous subscribers: refused" in hub.log
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            event = {"topic": "t", "data": "x"}
            refused = client.post("/publish", json=event)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            headers = {"Authorization": f"Bearer {token(['t'])}"}
            assert client.post("/publish", json=event, headers=headers).status_code == 200
            # A forwarded address from an untrusted peer is not believed (uvicorn's own
            # proxy-header handling is off): the request still works, nothing crashes.
            spoofed = {**headers, "X-Forwarded-For": "9.9.9.9"}
            assert client.post("/publish", json=event, headers=spoofed).status_code == 200
        assert hub.stop() == 0


def test_serve_refuses_an_unusable_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssehub.cli", "serve", "--auth", "jwt", "--jwt-key", "short"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr
