"""``GET /metrics``: Prometheus text from the hub's own registry, read from broker counters."""

from __future__ import annotations

import os
import time
import uuid

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from ssehub.broker import Broker
from ssehub.hub import HubSettings, create_app

from .conftest import client_for, hub_of, open_events, running_hub

pytestmark = pytest.mark.anyio

EXPECTED = {
    "ssehub_info",
    "ssehub_open_connections",
    "ssehub_connections",
    "ssehub_subscribers",
    "ssehub_topics",
    "ssehub_events_published",
    "ssehub_events_delivered",
    "ssehub_events_dropped",
    "ssehub_slow_consumer_disconnects",
    "ssehub_replays",
    "ssehub_resets",
    "ssehub_publish_duration_seconds",
    "ssehub_backend_up",
    "ssehub_draining",
    "ssehub_uptime_seconds",
    "ssehub_http_requests",
}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics and return {(sample name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return samples[(name, ())]


async def publish(client: httpx.AsyncClient, topic: str, data: str) -> str:
    response = await client.post("/publish", json={"topic": topic, "data": data})
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


async def test_every_documented_metric_is_exposed(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert names >= EXPECTED
    # Process metrics come with the app's own registry, as with the global one.
    assert "process_cpu_seconds" in names
    assert response.headers["cache-control"] == "no-store"
    # Scrapers that ask for OpenMetrics get it.
    accept = "application/openmetrics-text; version=1.0.0"
    open_metrics = await client.get("/metrics", headers={"Accept": accept})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


async def test_publish_deliver_and_open_connections(
    hub_app: Starlette, client: httpx.AsyncClient
) -> None:
    with anyio.fail_after(10):
        before = await scrape(client)
        assert value(before, "ssehub_open_connections") == 0
        async with open_events(hub_app, "topic=orders") as stream:
            await stream.start()
            during = await scrape(client)
            assert value(during, "ssehub_open_connections") == 1
            assert value(during, "ssehub_connections_total") == 1
            assert value(during, "ssehub_subscribers") == 1
            assert value(during, "ssehub_topics") == 1
            await publish(client, "orders", "one")
            await publish(client, "orders", "two")
            await publish(client, "nobody-listens", "three")
            assert len(await stream.events().take(2)) == 2
            samples = await scrape(client)
            assert value(samples, "ssehub_events_published_total") == 3
            assert value(samples, "ssehub_events_delivered_total") == 2
            assert value(samples, "ssehub_publish_duration_seconds_count") == 3
            assert value(samples, "ssehub_publish_duration_seconds_sum") > 0
        after = await scrape(client)
        assert value(after, "ssehub_open_connections") == 0
        assert value(after, "ssehub_subscribers") == 0
        assert value(after, "ssehub_connections_total") == 1


async def test_slow_consumer_disconnects_and_drops() -> None:
    async with running_hub(HubSettings(queue_size=2)) as app, client_for(app) as client:
        broker = hub_of(app).broker
        # A subscriber that never reads: the third event overflows its queue of 2.
        slow = broker.subscribe("ticks")
        for n in range(3):
            await publish(client, "ticks", str(n))
        assert slow.closed
        samples = await scrape(client)
        assert value(samples, "ssehub_slow_consumer_disconnects_total") == 1
        # The two queued events are discarded with the shed subscription.
        assert value(samples, "ssehub_events_dropped_total") == 2


async def test_replays_and_resets(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(10):
        first = await publish(client, "feed", "a")
        await publish(client, "feed", "b")
        async with open_events(hub_app, "topic=feed", {"Last-Event-ID": first}) as stream:
            assert [e.data for e in await stream.events().take(1)] == ["b"]
        for bad in ("not valid!", "zz-999"):
            async with open_events(hub_app, "topic=feed", {"Last-Event-ID": bad}) as stream:
                await stream.start()
                assert stream.headers["ssehub-reset"] in {"malformed", "unknown"}
        samples = await scrape(client)
        assert value(samples, "ssehub_replays_total") == 1
        assert value(samples, "ssehub_resets_total") == 2


async def test_request_counter_labels_are_bounded(client: httpx.AsyncClient) -> None:
    await client.get("/status")
    for n in range(5):
        assert (await client.get(f"/no/such/path/{n}")).status_code == 404
    await client.request("BREW", "/status")
    samples = await scrape(client)
    requests = {
        labels: count
        for (name, labels), count in samples.items()
        if name == "ssehub_http_requests_total"
    }
    assert requests[(("method", "GET"), ("route", "/status"), ("status", "200"))] == 1
    # Unmatched paths share one label value, unknown methods another: scanners cannot blow up
    # the series count.
    assert requests[(("method", "GET"), ("route", "other"), ("status", "404"))] == 5
    assert requests[(("method", "other"), ("route", "/status"), ("status", "405"))] == 1
    assert all(dict(labels)["route"] in {"/status", "other", "/metrics"} for labels in requests)


async def test_each_app_has_its_own_registry() -> None:
    async with (
        running_hub() as first,
        running_hub() as second,
        client_for(first) as one,
        client_for(second) as two,
    ):
        await publish(one, "x", "only on the first hub")
        assert value(await scrape(one), "ssehub_events_published_total") == 1
        assert value(await scrape(two), "ssehub_events_published_total") == 0


async def test_backend_health_and_draining() -> None:
    # A broker that was never entered: the app answers, and says the backend is not up.
    app = create_app(broker=Broker())
    async with client_for(app) as client:
        samples = await scrape(client)
        assert value(samples, "ssehub_backend_up") == 0
    async with running_hub() as app, client_for(app) as client:
        assert value(await scrape(client), "ssehub_backend_up") == 1
        assert value(await scrape(client), "ssehub_draining") == 0
        hub_of(app).drain()
        assert value(await scrape(client), "ssehub_draining") == 1


async def test_metrics_can_be_switched_off() -> None:
    async with running_hub(HubSettings(metrics=False)) as app, client_for(app) as client:
        response = await client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        # Without metrics the hub still serves, and still tags requests with an id.
        assert (await client.get("/health")).headers["x-request-id"]


async def test_metrics_need_a_credential_when_auth_is_on() -> None:
    jwt = pytest.importorskip("jwt")
    secret = "s" * 40
    settings = HubSettings(auth="jwt", jwt_key=secret)
    credential = jwt.encode(
        {"sub": "prometheus", "exp": int(time.time()) + 600, "ssehub": {}},
        secret,
        algorithm="HS256",
    )
    async with running_hub(settings) as app, client_for(app) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {credential}"})
        assert allowed.status_code == 200
        assert "ssehub_events_published_total" in allowed.text


# redis-py is asyncio-only: this test runs on asyncio on purpose (no trio variant).
@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})], ids=["asyncio"])
async def test_metrics_and_dashboard_stats_with_redis() -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("SSEHUB_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis does not answer at {url} ({exc}); SSEHUB_REQUIRE_REDIS=1")
        pytest.skip(f"Redis does not answer at {url}: start redis-server to run this test")
    from ssehub.backends.redis import RedisBackend

    prefix = "test-metrics-" + uuid.uuid4().hex[:12]
    backend = RedisBackend(url, history_size=100, history_ttl=600, prefix=prefix)
    try:
        async with (
            Broker(backend) as broker,
            running_hub(broker=broker) as app,
            client_for(app) as client,
        ):
            first = await publish(client, "feed", "a")
            await publish(client, "feed", "b")
            with anyio.fail_after(10):
                async with open_events(app, "topic=feed", {"Last-Event-ID": first}) as stream:
                    assert [e.data for e in await stream.events().take(1)] == ["b"]
                    await publish(client, "feed", "c")
                    assert [e.data for e in await stream.events().take(1)] == ["c"]
                    stats = (await client.get("/dashboard/stats")).json()
            samples = await scrape(client)
        assert value(samples, "ssehub_backend_up") == 1
        assert value(samples, "ssehub_replays_total") == 1
        assert value(samples, "ssehub_events_published_total") == 3
        assert stats["topics"]["feed"] == {"subscribers": 1, "history": 3, "events": 1}
    finally:
        client_sync = redis.Redis.from_url(url, socket_timeout=5)
        keys = list(client_sync.scan_iter(match=f"ssehub:{{{prefix}}}:*", count=1000))
        if keys:
            client_sync.delete(*keys)
        client_sync.close()
