"""Byte budgets of ``ssehub serve`` (issue 18 item 1), attacked over loopback with large events.

A real ``ssehub serve`` process with default settings (memory broker) is sent what once took a
hub from 64 to 459 MiB: 300 publishes of a 1 MB JSON string to one topic, then 300 topics of
100 KB each. Its resident memory is read from ``/proc/<pid>/status``. A second process checks the
retention of evicted events on its own: ``--history 10`` with the byte budgets raised out of the
way, so only the count bound evicts, and evicted events must be freed at once (they were kept in
batches of up to 256 per topic).

Each test sends about 300-330 MB over one keep-alive connection; both stay well under a minute.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .test_hub_server import HubProcess, free_port, hub_process

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
BIG = "x" * 1_000_000  # a 1 MB JSON string: the body is 1 000 034 bytes, under the 1 MiB limit
MEDIUM = "y" * 100_000


def vm(pid: int, field: str) -> int:
    """``VmRSS`` (or another ``Vm*`` field) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Client:
    """One keep-alive HTTP/1.1 connection to the hub (bodies are sent as they are)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None

    def publish(self, topic: str, data: str) -> tuple[int, Any]:
        body = json.dumps({"topic": topic, "data": data}).encode()
        return self.request("POST", "/publish", body)


@contextmanager
def serving(*args: str) -> Iterator[tuple[HubProcess, Client]]:
    port = free_port()
    with hub_process("--port", str(port), "--no-dashboard", *args) as process:
        process.wait_ready()
        client = Client(port)
        try:
            # Warm up: the first publishes import and allocate what every later one reuses.
            for n in range(20):
                assert client.publish("warm-up", "w" * 10_000 * n)[0] == 200
            yield process, client
        finally:
            client.connection.close()


def test_large_events_stay_within_the_default_budgets() -> None:
    with serving() as (process, client):
        pid = process.process.pid
        before = vm(pid, "VmRSS")
        accepted = 0
        for _ in range(300):
            status, answer = client.publish("big", BIG)
            assert status in (200, 413), (status, answer)
            accepted += status == 200
        for n in range(300):
            status, answer = client.publish(f"medium/{n}", MEDIUM)
            assert status in (200, 413), (status, answer)
            accepted += status == 200
        after = vm(pid, "VmRSS")
        growth = after - before
        assert growth < 400 * MIB, f"RSS grew {growth / MIB:.0f} MiB"
        assert accepted == 600  # within the limits, so stored (and evicted), not refused

        status, document = client.request("GET", "/status")
        assert status == 200
        topics, totals = document["topics"], document["totals"]
        # The defaults: 32 MiB per topic, 256 MiB in all (what events cost in memory).
        assert 0 < topics["big"]["history_bytes"] <= 32 * MIB
        assert topics["big"]["history"] < 300  # the oldest large events were evicted
        assert totals["history_bytes"] <= 256 * MIB
        assert topics["medium/299"]["history"] == 1

        # Line breaks grow sevenfold on the wire: a 1 MB body of them is refused, not stored.
        status, answer = client.publish("big", "\n" * 400_000)
        assert (status, answer["error"]) == (413, "event_too_large"), answer
        status, answer = client.publish("big", "z" * (2 * MIB))
        assert (status, answer["error"]) == (413, "body_too_large"), answer
        assert client.request("GET", "/status")[1]["topics"]["big"] == topics["big"]


def test_history_10_frees_evicted_events_at_once() -> None:
    # The byte budgets are raised far out of the way: only the count bound evicts here.
    huge = str(64 * 1024 * MIB)
    with serving("--history", "10", "--history-bytes", huge, "--history-total-bytes", huge) as (
        process,
        client,
    ):
        pid = process.process.pid
        before = vm(pid, "VmRSS")
        for _ in range(300):
            assert client.publish("big", BIG)[0] == 200
        growth = vm(pid, "VmRSS") - before
        # 10 retained events cost about 20 MB (the text and its encoded copy). Evicted events
        # kept in batches of up to 256 per topic cost over 500 MB.
        assert growth < 120 * MIB, f"RSS grew {growth / MIB:.0f} MiB"
        status, document = client.request("GET", "/status")
        assert status == 200
        assert document["topics"]["big"]["history"] == 10
        assert document["topics"]["big"]["history_bytes"] < 25 * MIB
