"""The hub's byte budgets (issue 18 item 1): settings, the 413 for a large event, and reporting.

``--max-event-size`` refuses an event with ``413 {"error": "event_too_large"}`` (nothing of the
request is stored), consistently with ``--max-body-size``: a body within that limit fits unless
its data is made of line breaks, which grow on the wire. The history budgets are settings with
flags and ``SSEHUB_`` variables; ``/status`` (to callers who see every topic) and ``/metrics``
report the bytes held.
"""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ssehub import ConfigurationError
from ssehub.broker import Broker
from ssehub.broker.history import (
    DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_TOPICS,
    DEFAULT_HISTORY_TOTAL_BYTES,
    DEFAULT_MAX_EVENT_SIZE,
    HistoryBudget,
)
from ssehub.channels._ingest import IngestHandler
from ssehub.hub import HubSettings
from ssehub.hub._settings import options
from ssehub.hub._status import status_document

from .conftest import client_for, hub_of, running_hub

pytestmark = pytest.mark.anyio

KIB = 1024


def test_the_budgets_are_settings_with_flags_variables_and_documented_defaults() -> None:
    settings = HubSettings()
    assert HistoryBudget.of(settings) == HistoryBudget()
    assert (settings.max_event_size, settings.history_bytes) == (
        DEFAULT_MAX_EVENT_SIZE,
        DEFAULT_HISTORY_BYTES,
    )
    assert (settings.history_total_bytes, settings.history_topics) == (
        DEFAULT_HISTORY_TOTAL_BYTES,
        DEFAULT_HISTORY_TOPICS,
    )
    # The largest event equals the largest body by default (see DEFAULT_MAX_EVENT_SIZE).
    assert settings.max_event_size == settings.max_body_size
    specs = {spec.name: spec for spec in options()}
    assert specs["history_total_bytes"].flag == "--history-total-bytes"
    assert specs["max_event_size"].env == "SSEHUB_MAX_EVENT_SIZE"
    chosen = HubSettings.from_sources(
        {"history_bytes": "1000"},
        {"SSEHUB_HISTORY_TOTAL_BYTES": "5000", "SSEHUB_HISTORY_TOPICS": "7"},
    )
    assert HistoryBudget.of(chosen) == HistoryBudget(DEFAULT_MAX_EVENT_SIZE, 1000, 5000, 7)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_event_size": 0}, "max_event_size"),
        ({"history_topics": 0}, "history_topics"),
        ({"history_bytes": 2048, "history_total_bytes": 1024}, "must not exceed"),
    ],
)
def test_budgets_out_of_range_are_refused(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HubSettings(**changes)


async def test_an_event_over_max_event_size_gets_413_and_nothing_is_published() -> None:
    settings = HubSettings(max_event_size=KIB)
    async with running_hub(settings) as app, client_for(app) as http:
        fits = "a" * (KIB - len("data: \n\n"))
        assert (await http.post("/publish", json={"topic": "t", "data": fits})).status_code == 200
        for body in (
            {"topic": "t", "data": fits + "a"},
            [{"topic": "t", "data": "small"}, {"topic": "t", "data": "b" * KIB}],
        ):
            response = await http.post("/publish", json=body)
            assert response.status_code == 413
            assert response.json()["error"] == "event_too_large"
            assert str(KIB) in response.json()["detail"]
        assert hub_of(app).broker.statistics().published == 1
        # Channel messages have the same bound.
        await http.post("/channels", json={"name": "jobs"})
        response = await http.post("/channels/jobs/broadcast", json={"type": "m", "payload": fits})
        assert (response.status_code, response.json()["error"]) == (413, "event_too_large")


async def test_line_breaks_that_fit_the_body_limit_can_exceed_the_event_limit() -> None:
    async with running_hub() as app, client_for(app) as http:
        body = json.dumps({"topic": "t", "data": "\n" * 400_000}).encode()
        assert len(body) < HubSettings().max_body_size  # 800 KB of JSON escapes...
        response = await http.post(
            "/publish", content=body, headers={"Content-Type": "application/json"}
        )
        # ...are 2.8 MB on the wire (each line break is a "\ndata: " line).
        assert (response.status_code, response.json()["error"]) == (413, "event_too_large")
        text = {"topic": "t", "data": "x" * (HubSettings().max_body_size - 100)}
        assert (await http.post("/publish", json=text)).status_code == 200  # plain text fits


async def test_ingest_answers_event_too_large() -> None:
    budget = HistoryBudget(max_event_size=KIB)
    async with Broker(budget=budget) as broker:
        handler = IngestHandler(broker, None, max_topics=8)
        line = json.dumps({"command": "publish", "topic": "t", "data": "x" * KIB}).encode()
        reply = await handler.execute(line)
        assert (reply["ok"], reply["error"]) == (False, "event_too_large")


async def test_status_and_metrics_report_the_bytes_held() -> None:
    async with running_hub() as app, client_for(app) as http:
        await http.post("/publish", json={"topic": "a", "data": "x" * 10_000})
        await http.post("/publish", json={"topic": "b", "data": "y"})
        broker = hub_of(app).broker
        held = broker.statistics().history_bytes
        assert held > 20_000  # the text and its encoded copy
        status = (await http.get("/status")).json()
        per_topic = {name: topic["history_bytes"] for name, topic in status["topics"].items()}
        assert sum(per_topic.values()) == held == status["totals"]["history_bytes"]
        metrics = await scrape(http)
        assert metrics["ssehub_history_bytes"] == held
        # A caller who does not see every topic gets no sizes: they would tell about others.
        filtered = await status_document(broker, uptime=0, visible=lambda topic: topic == "a")
        assert "history_bytes" not in filtered["topics"]["a"]
        assert "history_bytes" not in filtered["totals"]


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }
