"""Property-based fuzz of an auth-enabled hub: no 5xx, JSON errors, parseable streams, no leaks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from ssehub.hub import ERROR_CODES
from ssehub.hub._patterns import TopicPatterns
from ssehub.testing import http_scope, stream_asgi
from ssehub.wire import EventParser

from .support import client_for, jwt_settings, running_hub, token

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

READER = "Bearer " + token(["*"], ["*"])
LOWERCASE_READER = "bearer " + token(subscribe=["*"])  # the scheme is case-insensitive
SCOPED = "Bearer " + token(["a", "b/*"], ["a"])
GRANTS = {READER: ["*"], LOWERCASE_READER: ["*"], SCOPED: ["a"]}
credentials = st.sampled_from(
    [
        None,
        READER,
        SCOPED,
        "Bearer " + token(["*"], lifetime=-100),
        "Bearer garbage",
        "Basic eA==",
        "Bearer ",
        LOWERCASE_READER,
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=8,
)
fields = st.sampled_from(["topic", "topics", "data", "event", "retry", "private", "id"])
bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(fields, json_values | st.sampled_from(["a", "b/1", "c"])).map(json.dumps),
    st.lists(st.dictionaries(fields, json_values | st.just("a")), max_size=3).map(json.dumps),
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    settings_ = jwt_settings(
        anonymous_subscribe=True,
        auth_query_token=True,
        cors_origins=("https://app.example",),
        trusted_proxies=("127.0.0.1",),
        publish_rate=1e6,
        publish_burst=10_000,
    )
    async with running_hub(settings_) as hub_app:
        yield hub_app


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@FUZZ
@given(
    body=bodies,
    credential=credentials,
    origin=st.sampled_from([None, "https://app.example", "https://evil.example", "null"]),
    cookie=st.booleans(),
    forwarded=header_values,
    path=st.sampled_from(["/publish", "/status", "/channels", "/events"]),
    method=st.sampled_from(["POST", "GET", "OPTIONS"]),
)
async def test_requests_never_cause_a_server_error(
    http: httpx.AsyncClient,
    body: str | bytes,
    credential: str | None,
    origin: str | None,
    cookie: bool,
    forwarded: str,
    path: str,
    method: str,
) -> None:
    headers = {"content-type": "application/json", "x-forwarded-for": forwarded}
    if credential is not None:
        if cookie:
            headers["cookie"] = "ssehub_token=" + credential.partition(" ")[2]
        else:
            headers["authorization"] = credential
    if origin is not None:
        headers["origin"] = origin
        headers["access-control-request-method"] = "POST"
    if path == "/events" and method == "GET":
        path = "/events/none"  # a valid subscription streams forever: streams are fuzzed below
    content = body.encode() if isinstance(body, str) else body
    raw = {name: value.encode("latin-1") for name, value in headers.items()}
    with anyio.fail_after(5):
        response = await http.request(method, path, headers=raw, content=content)
    assert response.status_code < 500
    if response.status_code >= 400:
        document = response.json()
        assert set(document) == {"error", "detail"}
        assert document["error"] in ERROR_CODES or response.status_code in {404, 405}


# Query strings for GET /events: repeated, empty, odd and over-long topics, lastEventId and the
# token parameter, percent-escapes (valid and broken), and unrelated parameters.
query_keys = st.sampled_from(["topic", "topic", "lastEventId", "token", "x", "", "topic[]"])
query_values = st.one_of(
    st.sampled_from(["a", "b", "b/1", "*", "", "%", "%zz", "%0a", "%00", "a%0Db", "x" * 300]),
    st.text(max_size=20).map(lambda text: quote(text, safe="")),
    st.sampled_from([READER, SCOPED]).map(lambda value: value.partition(" ")[2]),
)
query_strings = st.lists(st.tuples(query_keys, query_values), max_size=40).map(
    lambda pairs: "&".join(f"{key}={value}" for key, value in pairs)
)


@FUZZ
@given(query=query_strings, credential=credentials, last_event_id=header_values)
async def test_subscribe_queries_never_cause_a_server_error(
    app: Starlette, query: str, credential: str | None, last_event_id: str
) -> None:
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    if credential is not None:
        headers["authorization"] = credential
    scope = http_scope("/events", query_string=query, headers=headers)
    with anyio.fail_after(10):
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code < 500
            if stream.status_code != 200:
                document = json.loads(await stream.read_all())
                assert set(document) == {"error", "detail"}
                assert document["error"] in ERROR_CODES
                return
            # An accepted stream opens with a comment that a spec parser reads as nothing,
            # possibly preceded by a reset notice: never garbage, never the client's id.
            first = await stream.receive_chunk()
            assert first is not None
            assert first.startswith(b": ok")
            events = list(EventParser().feed(first))
            assert all(event.event == "ssehub.reset" for event in events)
            if last_event_id:
                # What follows the fixed opening comment (an id such as "k" is in ": ok").
                rest = first.removeprefix(b": ok\n\n")
                assert last_event_id.encode("utf-8", "replace") not in rest
            await stream.disconnect()


@FUZZ
@given(
    events=st.lists(
        st.tuples(
            st.text(max_size=30),  # data, CR/LF/NUL included
            st.booleans(),  # private
            st.sampled_from(["a", "b"]),
        ),
        min_size=1,
        max_size=5,
    ),
    last_event_id=header_values,
    credential=credentials,
)
async def test_streams_stay_parseable_and_private_events_do_not_leak(
    app: Starlette,
    http: httpx.AsyncClient,
    events: list[tuple[str, bool, str]],
    last_event_id: str,
    credential: str | None,
) -> None:
    headers = {"last-event-id": last_event_id}
    if credential is not None:
        headers["authorization"] = credential
    scope = http_scope("/events", query_string="topic=a&topic=b", headers=headers)
    publisher = {"authorization": "Bearer " + token(["*"])}
    with anyio.fail_after(10):
        async with stream_asgi(app, scope=scope) as stream:
            await stream.start()
            assert stream.status_code < 500
            if stream.status_code != 200:
                document = json.loads(await stream.read_all())
                assert document["error"] in ERROR_CODES
                return
            sent = []
            for data, private, topic in events:
                response = await http.post(
                    "/publish",
                    json={"topic": topic, "data": data, "private": private},
                    headers=publisher,
                )
                assert response.status_code in {200, 400}, response.text
                if response.status_code == 200:
                    sent.append((response.json()["id"], data, private, topic))
            # A public marker event: everything before it has been sent when it arrives.
            marker = await http.post(
                "/publish", json={"topic": "a", "data": "end"}, headers=publisher
            )
            marker_id = marker.json()["id"]
            parser = EventParser()
            received = []
            while not received or received[-1].id != marker_id:
                chunk = await stream.receive_chunk()
                assert chunk is not None, "the stream ended early"
                received += [e for e in parser.feed(chunk) if e.event == "message"]
    grants = TopicPatterns(GRANTS.get(credential or "", []))
    expected = [(i, d) for i, d, private, topic in sent if not private or grants.matches(topic)]
    # Data went out as sent (a CR or LF in it is normalised to LF by the parser).
    normalised = [(i, d.replace("\r\n", "\n").replace("\r", "\n")) for i, d in expected]
    assert [(e.id, e.data) for e in received[:-1]] == normalised
