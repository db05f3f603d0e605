"""The dashboard: its routes (ASGI), and the page itself in headless Chromium on a real server.

The browser test drives Debian's ``/usr/bin/chromium`` through Playwright (browser downloads are
impossible here) against ``ssehub serve`` on a free 127.0.0.1 port. It skips with the reason when
Chromium or Playwright is missing, unless ``SSEHUB_REQUIRE_BROWSER=1`` (CI), which makes that a
failure. It saves ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from ssehub.hub import HubSettings, create_app

from .browser_support import ARTIFACTS, CHROMIUM, TIMEOUT, browser_or_skip, serve
from .conftest import client_for, open_events, running_hub

# -- the routes, through ASGI -------------------------------------------------------------------


@pytest.mark.anyio
async def test_page_is_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    # The inline script and style are allowed by their hashes, and only they are.
    for kind in ("script", "style"):
        bodies = re.findall(rf"<{kind}>(.*?)</{kind}>", page, re.DOTALL)
        assert len(bodies) == 1
        digest = base64.b64encode(hashlib.sha256(bodies[0].encode()).digest()).decode()
        assert policy[f"{kind}-src"] == f"'sha256-{digest}'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Nothing from elsewhere (hubs often run without internet), no inline handlers or styles.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert not re.search(r"\son[a-z]+=", page)
    assert not re.search(r"\sstyle=", page)
    # Relative URLs: the page also works when the hub is mounted under a prefix.
    for url in ("${BASE}dashboard/stats", "${BASE}events?topic=", "${BASE}publish"):
        assert url in page


@pytest.mark.anyio
async def test_stats_document(hub_app: Starlette, client: httpx.AsyncClient) -> None:
    with anyio.fail_after(10):
        async with open_events(hub_app, "topic=watched") as stream:
            await stream.start()
            for n in range(3):
                await client.post("/publish", json={"topic": "watched", "data": n})
            await client.post("/publish", json={"topic": "quiet", "data": "x"})
            assert len(await stream.events().take(3)) == 3
            response = await client.get("/dashboard/stats")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    assert document["topics"] == {
        "quiet": {"subscribers": 0, "history": 1, "events": 0},
        "watched": {"subscribers": 1, "history": 3, "events": 3},
    }
    assert document["topic_count"] == 2
    assert re.fullmatch(r"\d+-[0-9a-f]{8}", document["process"])
    assert document["connections"] == 1
    assert document["totals"]["published"] == 4
    assert document["draining"] is False
    assert document["backend_up"] is True


@pytest.mark.anyio
async def test_stats_list_the_busiest_topics_only(client: httpx.AsyncClient) -> None:
    await client.post("/publish", json=[{"topic": f"t{n:03}", "data": n} for n in range(250)])
    document = (await client.get("/dashboard/stats")).json()
    assert document["topic_count"] == 250
    assert len(document["topics"]) == 200


@pytest.mark.anyio
async def test_dashboard_can_be_switched_off() -> None:
    async with running_hub(HubSettings(dashboard=False)) as app, client_for(app) as client:
        for path in ("/", "/dashboard/stats"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"


@pytest.mark.anyio
async def test_stats_need_a_running_broker() -> None:
    async with client_for(create_app()) as client:  # lifespan not run: broker not entered
        response = await client.get("/dashboard/stats")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


# -- the page in a real browser ---------------------------------------------------------------


@pytest.mark.integration
def test_dashboard_in_chromium() -> None:
    sync_playwright = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with ExitStack() as stack:
        # drop_oldest with a small queue: a burst larger than it makes an ssehub.dropped notice
        # (the batches below stay within it, and every stream drains between two batches).
        options = ("--grace-period", "2", "--slow-policy", "drop_oldest", "--queue-size", "10")
        url = stack.enter_context(serve(*options))
        api = stack.enter_context(httpx.Client(base_url=url, timeout=TIMEOUT))
        # Two other subscribers, so the topic table and the chart have more than one line.
        for topic in ("prices", "alerts"):
            stream = stack.enter_context(api.stream("GET", "/events", params={"topic": topic}))
            assert stream.status_code == 200
        # And a channel listener's stream: a connection too, though no topic subscriber.
        assert api.post("/channels", json={"name": "jobs"}).status_code == 200
        listener = api.post("/channels/jobs/listeners", json={"id": "w1"}).json()
        stream = stack.enter_context(api.stream("GET", listener["events"]))
        assert stream.status_code == 200
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(TIMEOUT * 1000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )

        page.goto(f"{url}/?poll=400")
        # Locator waits, not wait_for_function: the page's CSP forbids eval, rightly.
        page.locator("#hub-state", has_text="live").wait_for()

        # Watch a topic: the page reads /events itself (fetch and its own SSE parser).
        page.fill("#watch-topic", "orders")
        page.click("#watch-form button[type=submit]")
        page.locator("#tail-state", has_text="watching orders").wait_for()

        # Published through the API, seen in the tail.
        published = api.post("/publish", json={"topic": "orders", "data": {"sku": "A-1", "qty": 3}})
        assert published.status_code == 200
        event_id = published.json()["id"]
        row = page.locator("#tail .ev", has_text='{"sku":"A-1","qty":3}')
        row.wait_for()
        assert row.locator(".id").text_content() == event_id
        assert row.locator(".type").text_content() == "message"

        # A named event nobody typed anywhere: shown like any other (EventSource would hand it
        # only to a listener for "created", so the tail used to miss it).
        created = api.post(
            "/publish", json={"topic": "orders", "data": {"order": 7}, "event": "created"}
        )
        assert created.status_code == 200
        named = page.locator("#tail .ev", has_text='{"order":7}')
        named.wait_for()
        assert named.locator(".type").text_content() == "created"
        assert named.locator(".id").text_content() == created.json()["id"]

        # The type filter narrows the tail to the listed types; empty shows them all again.
        page.fill("#filter-types", "created")
        assert named.is_visible()
        assert not row.is_visible()
        page.fill("#filter-types", "message, other")
        assert row.is_visible()
        assert not named.is_visible()
        page.fill("#filter-types", "")
        assert named.is_visible()

        # The publish form: a named event, seen in the tail too.
        page.fill("#pub-topic", "orders")
        page.fill("#pub-event", "note")
        page.fill("#pub-data", "hello from the form")
        page.click("#pub-send")
        page.locator("#pub-result", has_text="to 1 subscriber(s) on orders").wait_for()
        note = page.locator("#tail .ev", has_text="hello from the form")
        note.wait_for()
        assert note.locator(".type").text_content() == "note"

        # Filter, then pause: new events wait until resumed.
        page.fill("#filter", "sku")
        assert not note.is_visible()
        assert row.is_visible()
        page.fill("#filter", "")
        page.click("#pause")
        api.post("/publish", json={"topic": "orders", "data": "while paused"})
        page.locator("#pause", has_text="Resume (1 new)").wait_for()
        assert page.locator("#tail .ev", has_text="while paused").count() == 0
        page.click("#pause")
        page.locator("#tail .ev", has_text="while paused").wait_for()

        # Bursty traffic over a few polls: prices only at every other poll. The chart plots
        # the rate over a window of samples (from the counters), so it shows the average
        # instead of a sawtooth between a spike and 0, and the table shows the same number.
        for round_number in range(10):
            polls = int(page.evaluate("Number(document.body.dataset.polls || 0)"))
            batch = [{"topic": "prices", "data": {"p": n}} for n in range(10 * (round_number % 2))]
            batch += [{"topic": "orders", "data": {"o": n}} for n in range(1 + round_number % 3)]
            batch += [{"topic": "alerts", "data": "disk"} for _ in range(round_number % 2)]
            assert api.post("/publish", json=batch).status_code == 200
            # The next poll (the value only grows): one batch per poll interval.
            page.locator(f"body:not([data-polls='{polls}'])").wait_for(state="attached")
        page.locator("#legend", has_text="prices").wait_for()
        page.locator("#chart-hint", has_text="averaged over the last 4 s").wait_for()
        # The plotted series and the table's figure, read at one instant (no poll between).
        series_json, table_rate = page.evaluate(
            "[document.getElementById('chart').dataset.series,"
            " document.querySelector('#topics tr[data-topic=prices] td:nth-child(4)')"
            ".textContent]"
        )
        prices_series = json.loads(series_json)["prices"]
        plotted = prices_series[next(i for i, v in enumerate(prices_series) if v > 0) :]
        assert len(plotted) >= 8, prices_series
        assert all(later >= earlier / 2 for earlier, later in itertools.pairwise(plotted)), plotted
        assert abs(float(table_rate) - plotted[-1]) <= 0.051, (table_rate, plotted)
        label = page.locator("#chart").get_attribute("aria-label") or ""
        assert label.startswith("events per second, 4 s average: prices"), label
        prices = page.locator("#topics tr[data-topic=prices] td")
        assert prices.nth(1).text_content() == "1"  # subscribers
        assert page.locator("#topics tr.selected").get_attribute("data-topic") == "orders"
        # Connections: the three topic streams (two here, the tail) and the listener stream.
        assert page.text_content("#c-connections") == "4"
        assert page.text_content("#c-subscribers") == "3 on topics"

        swatch = page.locator("#topics tr[data-topic=prices] .swatch")
        prices_color = swatch.evaluate("element => element.style.background")
        assert prices_color

        # Under drop_oldest, a stream that falls behind gets an ssehub.dropped notice: the
        # tail shows it as a line of its own, also through a filter that matches no event.
        page.fill("#filter", "no event has this")
        burst = [{"topic": "orders", "data": {"burst": n}} for n in range(50)]
        assert api.post("/publish", json=burst).status_code == 200
        dropped = page.locator("#tail .ev.notice", has_text="events dropped here")
        dropped.wait_for()
        assert dropped.locator(".type").text_content() == "ssehub.dropped"
        assert re.fullmatch(
            r"\d+ events dropped here: this stream fell behind \(drop_oldest\)",
            dropped.locator(".data").text_content() or "",
        )
        page.fill("#filter", "")
        page.locator("#tail .ev", has_text='{"burst":49}').wait_for()
        page.locator("#c-dropped", has_text=re.compile(r"^[1-9]")).wait_for()  # the next poll
        # orders is the busiest topic now; prices keeps its color (lines do not swap colors).
        page.locator("#legend > span:first-child", has_text="orders").wait_for()
        assert swatch.evaluate("element => element.style.background") == prices_color

        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert problems == []  # no CSP violation, no script error


# Streams the page's parser is checked on, against ssehub.wire.EventParser: named and unnamed
# events, every line ending, a BOM, comments, fields without a colon or value, an id with NUL
# (ignored), an id-only event (committed, nothing dispatched), retry, multi-byte characters,
# and an incomplete event at the end (dropped, its id not committed).
PARSER_STREAMS = [
    b"data: a\n\n",
    b"\xef\xbb\xbfdata: bom\r\n\r\n",
    b'event: created\ndata: {"a":1}\nid: 7\n\n',
    b"data: x\rdata: y\r\rid: 9\r\n\r\ndata: after\r\n\r\n",
    b"event: two\r\ndata: a\r\ndata: b\r\nid: 3\r\n\r\n",
    b": comment\ndata\ndata:\n\nevent\ndata: default type\n\n",
    b"id: a\x00b\ndata: nul\n\nid\ndata: empty id\n\n",
    b"retry: 1500\nretry: x\nretry: 2a\ndata: r\n\n",
    b"data: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n\n",
    b"data:  two spaces\nDATA: ignored\nevent: e\n\nid: 1\ndata: a\n\nid: 2\ndata: partial",
]


def _wire_parse(chunks: list[bytes]) -> dict[str, Any]:
    from ssehub.wire import EventParser

    parser = EventParser()
    events = [[e.event, e.data, e.id] for chunk in chunks for e in parser.feed(chunk)]
    parser.close()  # the connection ends: what was incomplete is dropped
    return {"events": events, "lastId": parser.last_event_id, "retry": parser.retry}


@pytest.mark.integration
def test_dashboard_tail_parser_agrees_with_the_wire_parser() -> None:
    sync_playwright = browser_or_skip()
    page_source = (
        Path(__file__).resolve().parents[2] / "src/ssehub/hub/static/dashboard.html"
    ).read_text()
    found = re.search(r"\n(  function eventParser\(dispatch\) \{\n.*?\n  \}\n)", page_source, re.S)
    assert found is not None
    runs = []  # every stream whole, split at each position, and byte by byte
    for stream in PARSER_STREAMS:
        runs.append([stream])
        runs += [[stream[:cut], stream[cut:]] for cut in range(len(stream) + 1)]
        runs.append([stream[n : n + 1] for n in range(len(stream))])
    driver = """([source, runs]) => {
        const eventParser = new Function(
          `const MAX_PENDING_TEXT = 1 << 20; ${source}; return eventParser;`)();
        return runs.map((chunks) => {
          const events = [];
          const parser = eventParser((e) => events.push([e.type, e.data, e.id]));
          parser.reset();
          const decoder = new TextDecoder();  // as TextDecoderStream: UTF-8, BOM removed
          for (const chunk of chunks) {
            parser.feed(decoder.decode(new Uint8Array(chunk), { stream: true }));
          }
          parser.reset();  // the connection ends
          return { events, lastId: parser.lastId, retry: parser.retry };
        });
    }"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()  # about:blank: no page policy, so the driver may eval
            results = page.evaluate(
                driver, [found.group(1), [[list(chunk) for chunk in run] for run in runs]]
            )
        finally:
            browser.close()
    for run, result in zip(runs, results, strict=True):
        assert result == _wire_parse(run), run


@pytest.mark.anyio
async def test_dashboard_needs_a_credential_when_auth_is_on() -> None:
    jwt = pytest.importorskip("jwt")
    secret = "s" * 40
    settings = HubSettings(auth="jwt", jwt_key=secret)
    credential = jwt.encode(
        {"sub": "operator", "exp": int(time.time()) + 600, "ssehub": {}}, secret, algorithm="HS256"
    )
    async with running_hub(settings) as app, client_for(app) as client:
        for path in ("/", "/dashboard/stats"):
            refused = await client.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            headers = {"Authorization": f"Bearer {credential}"}
            assert (await client.get(path, headers=headers)).status_code == 200


@pytest.mark.integration
def test_dashboard_behind_auth_in_chromium() -> None:
    sync_playwright = browser_or_skip()
    jwt = pytest.importorskip("jwt")
    secret = "k" * 40
    grants = {"publish": ["*"], "subscribe": ["*"]}
    claims = {"sub": "operator", "exp": int(time.time()) + 600, "ssehub": grants}
    operator = jwt.encode(claims, secret, algorithm="HS256")
    # The key goes through the environment, as the docs advise (command lines are visible).
    env = {"SSEHUB_AUTH": "jwt", "SSEHUB_JWT_KEY": secret}
    with ExitStack() as stack:
        url = stack.enter_context(serve("--grace-period", "2", env=env))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        stack.callback(browser.close)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        # Without a credential there is no dashboard.
        response = page.goto(f"{url}/")
        assert response is not None
        assert response.status == 401
        # With the hub's auth cookie, the page and its fetches (stats, tail, publish) all work.
        context.add_cookies([{"name": "ssehub_token", "value": operator, "url": url}])
        assert page.goto(f"{url}/?poll=400") is not None
        page.locator("#hub-state", has_text="live").wait_for()
        page.fill("#watch-topic", "secure")
        page.click("#watch-form button[type=submit]")
        page.locator("#tail-state", has_text="watching secure").wait_for()
        page.fill("#pub-topic", "secure")
        page.fill("#pub-data", "sent with the cookie")
        page.click("#pub-send")
        page.locator("#pub-result", has_text="to 1 subscriber(s) on secure").wait_for()
        page.locator("#tail .ev", has_text="sent with the cookie").wait_for()
        page.locator("#topics tr[data-topic=secure]").wait_for()
