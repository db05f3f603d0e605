"""Mercure in a real browser: Chromium's own ``EventSource`` against ``ssehub serve --mercure``.

Selectors of each kind (exact, ``*``, a URI template) receive matching updates and not the
others; a private update reaches only the ``EventSource`` whose token's ``subscribe`` selectors
match it; and when the hub ends a stream (``--max-connection-age``), the browser reconnects by
itself with ``Last-Event-ID`` and gets, exactly once, the update published while it was away,
whose id the publisher chose. Publishing without a matching ``publish`` claim is refused. See
``browser_support.py`` for how Chromium and the server are run.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from .browser_support import CHROMIUM, TIMEOUT, browser_or_skip, serve
from .mercure_support import HUB, mercure_env, mercure_token, publisher, subscriber

pytestmark = pytest.mark.integration

BOOKS = "https://example.com/books/{id}"

# Opens named EventSources on the hub's origin; records messages, opens and errors per name.
OPEN_STREAMS = """(streams) => {
  window.got = {}; window.opens = {}; window.errors = {};
  for (const [name, params] of streams) {
    const url = new URL('/.well-known/mercure', location);
    for (const [key, value] of params) url.searchParams.append(key, value);
    const source = new EventSource(url);
    got[name] = []; opens[name] = 0; errors[name] = 0;
    source.onopen = () => { opens[name] += 1; };
    source.onerror = () => { errors[name] += 1; };
    source.onmessage = (event) => { got[name].push([event.lastEventId, event.data]); };
  }
}"""


def publish(api: httpx.Client, fields: dict[str, str], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or publisher()}"}
    return api.post(HUB, data=fields, headers=headers)


def test_eventsource_selectors_private_updates_and_resume_in_chromium() -> None:
    sync_playwright = browser_or_skip()
    with ExitStack() as stack:
        # Streams end after 4.8-6 s (the broker's 20% jitter): a forced reconnect, late enough
        # for the first part of the test to finish on a loaded machine before any stream ends.
        args = ("--mercure", "--mercure-anonymous", "--max-connection-age", "6")
        url = stack.enter_context(serve(*args, "--grace-period", "2", env=mercure_env()))
        api = stack.enter_context(httpx.Client(base_url=url, timeout=TIMEOUT))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        stack.callback(browser.close)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.goto(f"{url}/livez")  # any page of the hub's origin: EventSource needs no CORS

        reader = subscriber([BOOKS])
        streams: list[tuple[str, list[tuple[str, str]]]] = [
            ("exact", [("topic", "https://example.com/news")]),
            ("all", [("topic", "*")]),
            ("template", [("topic", BOOKS)]),
            ("private", [("topic", BOOKS), ("authorization", reader)]),
        ]
        page.evaluate(OPEN_STREAMS, streams)
        page.wait_for_function("() => Object.values(opens).every((n) => n >= 1)")

        # retry: the browser reconnects 1 s after a stream ends (its default is 3 s).
        updates = [
            {"topic": "https://example.com/news", "data": "news", "retry": "1000"},
            {"topic": "https://example.com/books/1", "data": "book 1", "id": "urn:uuid:b1"},
            {"topic": "https://example.com/books/1/reviews", "data": "review"},
            {"topic": "https://example.com/books/2", "data": "secret", "private": "on"},
        ]
        ids = []
        for fields in updates:
            response = publish(api, fields)
            assert response.status_code == 200, response.text
            ids.append(response.text)
        assert ids[1] == "urn:uuid:b1"
        page.wait_for_function("() => got.all.length === 3 && got.private.length === 2")
        got: dict[str, Any] = page.evaluate("got")
        assert got["exact"] == [[ids[0], "news"]]
        assert got["all"] == [[ids[0], "news"], [ids[1], "book 1"], [ids[2], "review"]]
        assert got["template"] == [[ids[1], "book 1"]]
        assert got["private"] == [[ids[1], "book 1"], [ids[3], "secret"]]

        # Refused publishers: no token, a token for other topics.
        assert publish(api, {"topic": "https://example.com/news"}, "x").status_code == 401
        other = mercure_token(["https://example.com/orders/{id}"])
        assert publish(api, {"topic": "https://example.com/news"}, other).status_code == 403

        # The hub ends the streams; publish while the browser waits to reconnect.
        page.wait_for_function("() => errors.template >= 1")
        missed = publish(api, {"topic": "https://example.com/books/3", "data": "b3", "id": "b-3"})
        assert missed.status_code == 200
        page.wait_for_function("() => opens.template >= 2 && got.template.length === 2")
        after = publish(api, {"topic": "https://example.com/books/4", "data": "b4"})
        page.wait_for_function("() => got.template.length === 3")
        got = page.evaluate("got")
        assert got["template"] == [[ids[1], "book 1"], ["b-3", "b3"], [after.text, "b4"]]
        assert problems == []
