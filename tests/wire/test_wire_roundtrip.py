"""Property: every event the encoder accepts parses back unchanged, for every separator and any
chunking of the bytes (SSE-SPEC.md §5 vector 19's property test)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ssehub
from ssehub.wire import EventParser, JSONServerSentEvent, MessageEvent, ServerSentEvent

LINE_BREAKS = ["\n", "\r", "\r\n", "\n\n", "\r\r", "\r\n\r\n"]
# Characters that tempt parsers into mistakes: spaces, colons, NUL, BOM, other "line breaks".
TRICKY = [" ", "  ", ":", ": ", "\x00", "\ufeff", "\v", "\f", "\x85", "\u2028", "\u2029", "data: "]

# Surrogates are excluded (not encodable as UTF-8; the encoder refuses them, tested elsewhere).
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
data_text = st.lists(
    st.one_of(unicode_text, st.sampled_from(LINE_BREAKS), st.sampled_from(TRICKY)), max_size=12
).map("".join)
single_line = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=20),
        st.sampled_from([t for t in TRICKY if t != "\x00"] + ["\x00"]),
    ),
    max_size=5,
).map("".join)
event_type = single_line
event_id = single_line.map(lambda s: s.replace("\x00", "")) | st.integers(0, 2**64)
comments = st.none() | data_text

SETTINGS = settings(max_examples=200, deadline=None)


def normalise_breaks(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def expected(
    data: str, event: str | None, id_: str | int | None, previous_id: str = ""
) -> MessageEvent:
    return MessageEvent(
        normalise_breaks(data), event or "message", previous_id if id_ is None else str(id_)
    )


@SETTINGS
@given(
    data=data_text,
    event=st.none() | event_type,
    id_=st.none() | event_id,
    retry=st.none() | st.integers(0, 2**40),
    comment=comments,
    sep=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_every_accepted_event_round_trips(
    data: str,
    event: str | None,
    id_: str | int | None,
    retry: int | None,
    comment: str | None,
    sep: str,
    cuts: list[int],
) -> None:
    sse = ServerSentEvent(data, event=event, id=id_, retry=retry, comment=comment, sep=sep)
    wire = sse.encode()
    parser = EventParser()
    events = [e for chunk in chunked(wire, cuts) for e in parser.feed(chunk)]
    assert events == [expected(data, event, id_)]
    assert parser.retry == retry


@SETTINGS
@given(
    frames=st.lists(
        st.tuples(st.none() | data_text, st.none() | event_type, st.none() | event_id),
        min_size=1,
        max_size=6,
    ),
    sep=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_streams_of_events_round_trip(
    frames: list[tuple[str | None, str | None, str | int | None]], sep: str, cuts: list[int]
) -> None:
    wire = b"".join(ServerSentEvent(d, event=e, id=i, sep=sep).encode() for d, e, i in frames)
    want: list[MessageEvent] = []
    last_id = ""
    for data, event, id_ in frames:
        if id_ is not None:
            last_id = str(id_)
        if data is not None:  # a frame without data sets the id but dispatches nothing
            want.append(expected(data, event, id_, last_id))
    parser = EventParser()
    assert [e for chunk in chunked(wire, cuts) for e in parser.feed(chunk)] == want
    assert parser.last_event_id == last_id


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(value=json_values, sep=st.sampled_from(["\n", "\r\n", "\r"]))
def test_json_events_round_trip(value: object, sep: str) -> None:
    import json

    sse = JSONServerSentEvent(value, sep=sep)
    events = EventParser().feed(sse.encode())
    if value is None:
        assert events == []  # None means "no data field", as in sse-starlette
    else:
        assert len(events) == 1
        assert json.loads(events[0].data) == value


@SETTINGS
@given(value=single_line, bad=st.sampled_from(["\r", "\n", "\r\n"]), at=st.integers(0, 30))
def test_line_breaks_in_event_or_id_are_always_rejected(value: str, bad: str, at: int) -> None:
    poisoned = value[:at] + bad + value[at:]
    with pytest.raises(ssehub.EventValidationError):
        ServerSentEvent("x", event=poisoned)
    with pytest.raises(ssehub.EventValidationError):
        ServerSentEvent("x", id=poisoned)
