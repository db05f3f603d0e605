"""ProtocolClient: handshake, browser-mode errors, transparent unbatching, resume ids."""

from __future__ import annotations

import dataclasses

import pytest

from ssehub import ConfigurationError, NegotiationError, SchemaValidationError
from ssehub.protocols import (
    BatchPolicy,
    ClientWants,
    EventProtocol,
    Negotiator,
    ProtocolClient,
    TypedEvent,
    protocol_error_event,
)
from ssehub.testing import ManualClock
from ssehub.wire import EventParser, MessageEvent


@dataclasses.dataclass(frozen=True)
class Tick:
    n: int


def make_protocol() -> EventProtocol:
    p = EventProtocol("ticks", ["1", "2"], features=["batching"])
    p.kind("tick", Tick, batchable=True)
    p.kind("note", str)
    p.kind("gone", str, versions=["2"])
    return p


def server_stream(session_headers: dict[str, str], count: int) -> bytes:
    """What a server would send: handshake, then ticks, batched when the client asked."""
    session = Negotiator([make_protocol()]).negotiate_request(session_headers)
    policy = BatchPolicy(max_count=3, kinds=session.batchable_kinds(), clock=ManualClock())
    frames = [session.handshake_event()]
    for n in range(1, count + 1):
        event = session.encode("tick", Tick(n), id=n)
        frames.extend(policy.add(event) if session.batching else [event])
    frames.extend(policy.flush())
    frames.append(session.encode("note", "done", id=count + 1))
    return b"".join(f.encode() for f in frames)


@pytest.mark.parametrize("features", [frozenset({"batching"}), frozenset()])
def test_client_sees_the_same_typed_events_with_or_without_batching(
    features: frozenset[str],
) -> None:
    client = ProtocolClient(make_protocol(), features=features)
    wire = server_stream(client.request_headers(), 7)
    assert (b"protocol.batch" in wire) == bool(features)
    parser = EventParser()
    out: list[TypedEvent[object]] = []
    # Byte by byte: the client layer must not care how the transport chunks.
    for i in range(len(wire)):
        for message in parser.feed(wire[i : i + 1]):
            out.extend(client.feed(message))
    assert client.handshake is not None
    assert client.handshake.features == features
    assert client.version == "2"
    assert [e.payload for e in out] == [*(Tick(n) for n in range(1, 8)), "done"]
    assert [e.id for e in out] == [str(n) for n in range(1, 9)]
    assert client.last_event_id == "8"


def test_resume_mid_batch_uses_each_item_id() -> None:
    client = ProtocolClient(make_protocol())
    wire = server_stream(client.request_headers(), 3)
    handled = []
    for message in EventParser().feed(wire):
        for typed in client.feed(message):
            if typed.payload == Tick(2):
                break  # the application stops after handling tick 1
            handled.append(typed)
        else:
            continue
        break
    resume_from = handled[-1].id
    assert resume_from == "1"
    resumed = ProtocolClient(make_protocol(), last_event_id=resume_from)
    assert resumed.request_headers()["Last-Event-ID"] == "1"


def test_request_headers_state_the_wants() -> None:
    client = ProtocolClient(make_protocol(), versions=("1",))
    assert client.request_headers() == {
        "X-Protocol": "ticks",
        "X-Protocol-Version": "1",
        "X-Client-Features": "batching",
    }
    assert client.version == "1"  # before any handshake: the newest accepted version
    assert client.wants == ClientWants("ticks", ("1",), frozenset({"batching"}))


def test_kinds_follow_the_negotiated_version() -> None:
    client = ProtocolClient(make_protocol(), versions=("1",))
    wire = Negotiator([make_protocol()]).negotiate_request({"X-Protocol-Version": "1"})
    client.feed(EventParser().feed(wire.handshake_event().encode())[0])
    with pytest.raises(SchemaValidationError):
        client.feed(MessageEvent('"x"', "gone", "1"))
    lenient = ProtocolClient(make_protocol(), versions=("1",), ignore_unknown=True)
    assert lenient.feed(MessageEvent('"x"', "gone", "4")) == []
    assert lenient.last_event_id == "4"


def test_handshake_for_another_protocol_or_version_is_refused() -> None:
    other = EventProtocol("other", ["1"])
    handshake = Negotiator([other]).negotiate_request({}).handshake_event()
    with pytest.raises(NegotiationError):
        ProtocolClient(make_protocol()).feed(EventParser().feed(handshake.encode())[0])
    v2 = Negotiator([make_protocol()]).negotiate_request({}).handshake_event()
    with pytest.raises(NegotiationError):
        ProtocolClient(make_protocol(), versions=("1",)).feed(EventParser().feed(v2.encode())[0])


def test_browser_mode_error_event_becomes_negotiation_error() -> None:
    event = protocol_error_event(NegotiationError("unknown protocol 'x'", {"default": "ticks"}))
    with pytest.raises(NegotiationError, match="unknown protocol") as info:
        ProtocolClient(make_protocol()).feed(EventParser().feed(event.encode())[0])
    assert info.value.available == {"default": "ticks"}
    with pytest.raises(SchemaValidationError):
        ProtocolClient(make_protocol()).feed(MessageEvent("[]", "protocol.error"))


def test_invalid_item_in_a_batch_hands_out_nothing_and_keeps_the_resume_point() -> None:
    client = ProtocolClient(make_protocol(), last_event_id="0")
    data = (
        '{"events":[{"id":"1","event":"tick","data":"{\\"n\\":1}"},'
        '{"id":"2","event":"tick","data":"{}"}]}'
    )
    with pytest.raises(SchemaValidationError):
        client.feed(MessageEvent(data, "protocol.batch", "2"))
    assert client.last_event_id == "0"


def test_versions_the_protocol_does_not_have_are_refused_at_once() -> None:
    # Accepted before, then the first feed() failed with an IndexError.
    with pytest.raises(ConfigurationError, match="none of the versions"):
        ProtocolClient(make_protocol(), versions=("3",))
