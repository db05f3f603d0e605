"""Negotiation: wants from headers or query, version choice, features, handshake, errors."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from ssehub import ConfigurationError, NegotiationError, SchemaValidationError
from ssehub.protocols import (
    HANDSHAKE_EVENT,
    ClientWants,
    EventProtocol,
    Handshake,
    Negotiator,
    negotiate_request,
    negotiation_error_response,
    protocol_error_event,
)
from ssehub.testing import http_scope
from ssehub.wire import MessageEvent, parse


def make_negotiator() -> Negotiator:
    tasks = EventProtocol("tasks", ["1", "2", "3"], features=["batching", "compact"])
    tasks.kind("task.progress", int, batchable=True)
    tasks.kind("task.removed", str, versions=["3"])
    health = EventProtocol("health", ["1"])
    health.kind("health.report", dict)
    return Negotiator([tasks, health])


def test_headers_pick_the_newest_common_version_and_common_features() -> None:
    session = make_negotiator().negotiate_request(
        {"X-Protocol": "tasks", "X-Protocol-Version": "1, 2", "X-Client-Features": "batching, zstd"}
    )
    assert session.protocol.name == "tasks"
    assert session.version == "2"
    assert session.features == frozenset({"batching"})  # unknown client features are ignored
    assert session.batching
    assert session.enabled("batching")
    assert not session.enabled("compact")
    assert [k.name for k in session.kinds()] == ["task.progress"]
    assert session.batchable_kinds() == {"task.progress"}


def test_no_wants_means_default_protocol_and_latest_version() -> None:
    session = make_negotiator().negotiate_request({})
    assert (session.protocol.name, session.version, session.features) == ("tasks", "3", frozenset())
    assert not session.batching
    assert not session.wants.from_query


def test_query_parameters_for_browsers() -> None:
    wants = ClientWants.parse({}, {"protocol": "health", "protocol_version": "1", "features": "x"})
    assert wants == ClientWants("health", ("1",), frozenset({"x"}), from_query=True)
    session = make_negotiator().negotiate(wants)
    assert (session.protocol.name, session.version) == ("health", "1")


def test_headers_win_over_query_and_are_case_insensitive() -> None:
    wants = ClientWants.parse({"x-PROTOCOL-version": "1"}, {"protocol_version": "2"})
    assert wants.versions == ("1",)
    assert not wants.from_query


def test_wants_render_back_to_headers_and_query() -> None:
    wants = ClientWants("tasks", ("2", "1"), frozenset({"batching", "a"}))
    assert wants.headers() == {
        "X-Protocol": "tasks",
        "X-Protocol-Version": "2, 1",
        "X-Client-Features": "a, batching",
    }
    assert ClientWants.parse(wants.headers()) == wants
    assert wants.query_params() == {
        "protocol": "tasks",
        "protocol_version": "2,1",
        "features": "a,batching",
    }
    assert ClientWants.parse({}, wants.query_params()) == ClientWants(
        "tasks", ("2", "1"), frozenset({"batching", "a"}), from_query=True
    )


def test_unknown_protocol_lists_what_is_available() -> None:
    with pytest.raises(NegotiationError, match="unknown protocol 'chat'") as info:
        make_negotiator().negotiate_request({"X-Protocol": "chat"})
    available = info.value.available
    assert available["default"] == "tasks"
    assert [p["name"] for p in available["protocols"]] == ["tasks", "health"]
    assert available["protocols"][0]["versions"] == ["1", "2", "3"]
    assert available["protocols"][0]["kinds"]["3"] == ["task.progress", "task.removed"]


def test_no_common_version() -> None:
    with pytest.raises(NegotiationError, match="server speaks 1, 2, 3") as info:
        make_negotiator().negotiate_request({"X-Protocol-Version": "4,5"})
    assert info.value.available["protocols"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Protocol-Version": "1;drop table"},
        {"X-Protocol-Version": ",".join(["1"] * 17)},
        {"X-Client-Features": "a" * 600},
        {"X-Protocol": "a, b"},
        {"X-Protocol": "tasks\x00"},
    ],
)
def test_malformed_wants_are_refused_without_echoing_them(headers: dict[str, str]) -> None:
    with pytest.raises(NegotiationError) as info:
        make_negotiator().negotiate_request(headers)
    assert "drop table" not in str(info.value)
    assert info.value.available["protocols"]


def test_negotiator_configuration_errors() -> None:
    p = EventProtocol("p", ["1"])
    with pytest.raises(ConfigurationError):
        Negotiator([])
    with pytest.raises(ConfigurationError):
        Negotiator([p, p])
    with pytest.raises(ConfigurationError):
        Negotiator([p], default="q")


def test_handshake_event_roundtrip() -> None:
    session = make_negotiator().negotiate_request({"X-Client-Features": "batching,compact"})
    event = session.handshake_event(retry=2000)
    assert event.event == HANDSHAKE_EVENT
    assert event.id is None  # the handshake never moves Last-Event-ID
    [message] = parse(event.encode())
    assert json.loads(message.data) == {
        "protocol": "tasks",
        "version": "3",
        "server_versions": ["1", "2", "3"],
        "kinds": ["task.progress", "task.removed"],
        "features": ["batching", "compact"],
    }
    assert Handshake.from_message(message) == session.handshake()


@pytest.mark.parametrize(
    "message",
    [
        MessageEvent(data="{}", event="other"),
        MessageEvent(data="nope", event=HANDSHAKE_EVENT),
        MessageEvent(data='{"protocol":"p"}', event=HANDSHAKE_EVENT),
        MessageEvent(
            data='{"protocol":1,"version":"1","server_versions":[],"kinds":[],"features":[]}',
            event=HANDSHAKE_EVENT,
        ),
    ],
)
def test_malformed_handshake(message: MessageEvent) -> None:
    with pytest.raises(SchemaValidationError):
        Handshake.from_message(message)


def test_session_encode_checks_the_negotiated_version() -> None:
    session = make_negotiator().negotiate_request({"X-Protocol-Version": "2"})
    assert session.encode("task.progress", 5, id=1).data == "5"
    with pytest.raises(SchemaValidationError):
        session.encode("task.removed", "a")
    assert "version='2'" in repr(session)


def _request(headers: dict[str, str] | None = None, query: str = "") -> Request:
    scope = http_scope("/events", headers=headers or {}, query_string=query)
    return Request(scope)


def test_negotiate_request_reads_a_starlette_request() -> None:
    request = _request({"x-protocol-version": "1"}, "protocol=tasks&features=batching")
    session = negotiate_request(make_negotiator(), request)
    assert (session.version, session.features) == ("1", frozenset({"batching"}))


def test_error_response_status_mode_is_a_406_json() -> None:
    exc = NegotiationError("no common version", {"protocols": []})
    response = negotiation_error_response(exc, _request({"x-protocol-version": "9"}))
    assert response.status_code == 406
    assert response.media_type == "application/json"
    assert json.loads(bytes(response.body)) == {
        "error": "negotiation_failed",
        "detail": "no common version",
        "available": {"protocols": []},
    }


def test_error_response_event_mode_for_browsers() -> None:
    exc = NegotiationError("unknown protocol 'x'", {"protocols": []})
    response = negotiation_error_response(exc, _request(query="protocol=x"))
    assert response.status_code == 200  # a browser would never reconnect after a 406
    assert response.media_type == "text/event-stream"
    [message] = parse(bytes(response.body))
    assert message.event == "protocol.error"
    assert json.loads(message.data)["detail"] == "unknown protocol 'x'"
    assert b"retry: 60000\n" in bytes(response.body)
    forced = negotiation_error_response(exc, mode="event", retry=5000)
    assert b"retry: 5000\n" in bytes(forced.body)
    assert negotiation_error_response(exc, mode="status").status_code == 406
    assert protocol_error_event(exc, retry=None).retry is None


def test_a_header_sent_twice_is_one_list_and_refused_as_such() -> None:
    # The last X-Protocol line decided which protocol was served; as one "tasks, health"
    # value it is refused (406).
    request = Request(http_scope("/", headers=[("x-protocol", "tasks"), ("x-protocol", "health")]))
    with pytest.raises(NegotiationError, match="exactly one protocol"):
        make_negotiator().negotiate_request(request.headers)
