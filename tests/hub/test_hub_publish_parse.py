"""POST /publish body validation, as pure functions (no app, no broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssehub import wire
from ssehub.hub import PublishRequest, parse_publish_body
from ssehub.hub._errors import ERROR_CODES, HubHTTPError
from ssehub.hub._publish import MAX_RETRY, check_content_type, check_topics
from ssehub.wire import ServerSentEvent


def parse(value: Any, *, max_topics: int = 32, max_batch: int = 1000) -> list[PublishRequest]:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    requests, _ = parse_publish_body(body, max_topics=max_topics, max_batch=max_batch)
    return requests


def error_of(value: Any, **kwargs: Any) -> HubHTTPError:
    with pytest.raises(HubHTTPError) as info:
        parse(value, **kwargs)
    return info.value


def test_single_object() -> None:
    body = b'{"topic": "orders", "data": "hello", "event": "created", "retry": 3000}'
    requests, batch = parse_publish_body(body, max_topics=32, max_batch=10)
    assert batch is False
    assert requests == [PublishRequest(("orders",), "hello", "created", 3000)]


def test_string_data_is_verbatim_including_line_breaks_and_spaces() -> None:
    data = " leading space\nline two\r\nline three\rend\n"
    assert parse({"topic": "t", "data": data})[0].data == data


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"b": [1, 2], "a": None}, '{"b":[1,2],"a":null}'),
        ([1, "x"], '[1,"x"]'),
        (42, "42"),
        (1.5, "1.5"),
        (None, "null"),
        (True, "true"),
        ({"ü": "日本"}, '{"ü":"日本"}'),
    ],
)
def test_other_json_values_become_compact_json(data: Any, text: str) -> None:
    assert parse({"topic": "t", "data": data})[0].data == text


def test_big_integers_survive_exactly() -> None:
    body = b'{"topic": "t", "data": {"n": 123456789012345678901234567890}}'
    assert parse(body)[0].data == '{"n":123456789012345678901234567890}'


def test_topics_list_is_deduplicated_in_order() -> None:
    assert parse({"topics": ["b", "a", "b"], "data": ""})[0].topics == ("b", "a")


def test_batch_keeps_order() -> None:
    requests, batch = parse_publish_body(
        json.dumps([{"topic": "a", "data": "1"}, {"topics": ["b"], "data": 2}]).encode(),
        max_topics=4,
        max_batch=2,
    )
    assert batch is True
    assert [(r.topics, r.data) for r in requests] == [(("a",), "1"), (("b",), "2")]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'\xef\xbb\xbf{"topic": "t", "data": 1}', "invalid_json"),
        (b'{"topic": "t", "data": NaN}', "invalid_json"),
        (b'{"topic": "t", "data": Infinity}', "invalid_json"),
        (b'{"topic": "t", "data": 1e999}', "invalid_json"),
        (b'{"topic": "t", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_body"),  # events[0] is not an object
        (b'{"topic": "t", "data": ' + b"1" * 5000 + b"}", "invalid_json"),
        (b'"text"', "invalid_body"),
        (b"3", "invalid_body"),
        (b"null", "invalid_body"),
        (b"[]", "empty_batch"),
        (b"[1]", "invalid_body"),
        (b'{"data": 1}', "missing_topic"),
        (b'{"topics": [], "data": 1}', "missing_topic"),
        (b'{"topic": "", "data": 1}', "invalid_topic"),
        (b'{"topic": "a b", "data": 1}', "invalid_topic"),
        (b'{"topic": 5, "data": 1}', "invalid_topic"),
        (b'{"topic": null, "data": 1}', "invalid_topic"),
        (b'{"topic": "\xc3\xa9", "data": 1}', "invalid_topic"),
        (b'{"topic": "' + b"a" * 257 + b'", "data": 1}', "invalid_topic"),
        (b'{"topics": "a", "data": 1}', "invalid_topic"),
        (b'{"topics": ["a", 1], "data": 1}', "invalid_topic"),
        (b'{"topic": "a", "topics": ["b"], "data": 1}', "invalid_topic"),
        (b'{"topic": "t"}', "missing_data"),
        (b'{"topic": "t", "data": "\\ud800"}', "invalid_data"),
        (b'{"topic": "t", "data": {"k": "\\udfff"}}', "invalid_data"),
        (b'{"topic": "t", "data": 1, "event": "a\\nb"}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": "a\\rb"}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": "a\\u0000b"}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": ""}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": 5}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": "ssehub.reset"}', "reserved_event"),
        (b'{"topic": "t", "data": 1, "event": "\\ud800"}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "event": "' + b"e" * 257 + b'"}', "invalid_event"),
        (b'{"topic": "t", "data": 1, "retry": -1}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": 1.5}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": true}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": "100"}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": 18446744073709551616}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": -1.0}', "invalid_retry"),
        (b'{"topic": "t", "data": 1, "retry": 2e19}', "invalid_retry"),
        (b'{"data": 1, "topic": "t", "private": true}', "unknown_field"),  # not without private=
        (b'[{"data": null}]', "missing_topic"),
        (b'{"topic": "t", "data": 1, "event": "ok\\n"}', "invalid_event"),
        (b'{"topic": "t\\n", "data": 1}', "invalid_topic"),
        (b'{"data": 1, "topics": ' + json.dumps(["a"] * 33).encode() + b"}", "too_many_topics"),
        (b'{"topic": "t", "data": 1, "id": "7"}', "unknown_field"),
        (b'{"topic": "t", "data": 1, "evnet": "x"}', "unknown_field"),
    ],
)
def test_invalid_bodies(body: bytes, code: str) -> None:
    error = error_of(body)
    assert error.code == code
    # Malformed input is a 400; a well-formed but reserved event type is a 403 (SSE-SPEC case 28).
    assert error.status_code == ERROR_CODES[code] == (403 if code == "reserved_event" else 400)
    assert error.detail


def test_id_is_refused_with_an_explanation() -> None:
    assert "assigns event ids" in error_of({"topic": "t", "data": 1, "id": "x"}).detail


def test_limits_on_topics_and_batch_size() -> None:
    topics = [f"t{i}" for i in range(3)]
    assert error_of({"topics": topics, "data": 1}, max_topics=2).code == "too_many_topics"
    # Duplicates are dropped, but count against the limit (the document's maxItems).
    assert parse({"topics": ["a", "a", "b"], "data": 1}, max_topics=3)[0].topics == ("a", "b")
    assert error_of({"topics": ["a", "a", "b"], "data": 1}, max_topics=2).code == "too_many_topics"
    too_many = [{"topic": "t", "data": i} for i in range(3)]
    error = error_of(too_many, max_batch=2)
    assert (error.code, error.status_code) == ("too_many_events", 413)


def test_batch_error_names_the_item() -> None:
    error = error_of([{"topic": "t", "data": 1}, {"topic": "t", "data": 1, "retry": -5}])
    assert error.code == "invalid_retry"
    assert error.detail.startswith("events[1]: ")


def test_retry_bounds() -> None:
    # One bound for the wire and the hub: what ServerSentEvent accepts, POST /publish accepts.
    assert MAX_RETRY is wire.MAX_RETRY
    assert MAX_RETRY == 2**64 - 1
    assert parse({"topic": "t", "data": 1, "retry": 0})[0].retry == 0
    assert parse({"topic": "t", "data": 1, "retry": 2**31})[0].retry == 2**31
    assert parse({"topic": "t", "data": 1, "retry": MAX_RETRY})[0].retry == MAX_RETRY
    ServerSentEvent("x", retry=MAX_RETRY).encode()
    # JSON Schema's "integer" includes numbers with a zero fraction (Python writes 3000.0).
    body = b'{"topic": "t", "data": 1, "retry": 3000.0}'
    assert parse(body)[0].retry == 3000
    assert type(parse(body)[0].retry) is int
    assert parse(b'{"topic": "t", "data": 1, "retry": 1e2}')[0].retry == 100


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x+json",
    ],
)
def test_json_content_types_are_accepted(value: str) -> None:
    check_content_type(value)


@pytest.mark.parametrize(
    "value",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"],
)
def test_other_content_types_are_refused(value: str | None) -> None:
    with pytest.raises(HubHTTPError) as info:
        check_content_type(value)
    assert (info.value.code, info.value.status_code) == ("unsupported_media_type", 415)


def test_check_topics_for_query_strings() -> None:
    assert check_topics(["a", "b", "a"], max_topics=3) == ("a", "b")
    with pytest.raises(HubHTTPError) as info:
        check_topics(["a", "b", "a"], max_topics=2)
    assert info.value.code == "too_many_topics"
    with pytest.raises(HubHTTPError) as info:
        check_topics([], max_topics=2)
    assert info.value.code == "missing_topic"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_fail_with_a_hub_error(body: bytes) -> None:
    status = 200
    try:
        parse_publish_body(body, max_topics=4, max_batch=4)
    except HubHTTPError as exc:
        status = exc.status_code
    assert status in (200, 400, 413)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"topic": json_values | st.text(), "data": json_values},
            optional={"event": json_values | st.text(), "retry": json_values},
        ),
        st.lists(st.fixed_dictionaries({"topic": st.text(), "data": json_values}), max_size=5),
    )
)
def test_random_json_only_ever_fails_with_a_hub_error(value: Any) -> None:
    try:
        requests = parse(value, max_topics=4, max_batch=4)
    except HubHTTPError as exc:
        requests = []
        status = exc.status_code
    else:
        status = 200
    assert status in (200, 400, 413)
    for request in requests:
        request.data.encode()  # always deliverable as UTF-8
