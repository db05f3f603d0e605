"""EventParser against SSE-SPEC.md §5 vectors 1-13, and the encoder's output for vectors 19-20,
fed whole, byte by byte and split at every point (WHATWG HTML §9.2.6,
https://html.spec.whatwg.org/multipage/server-sent-events.html)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import ssehub
from ssehub.wire import (
    DEFAULT_MAX_EVENT_SIZE,
    MAX_RETRY,
    EventParser,
    MessageEvent,
    ServerSentEvent,
    parse,
)

M = MessageEvent


def chunkings(stream: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Every way the tests deliver a stream: whole, byte by byte, and every 2-chunk split."""
    yield "whole", [stream]
    yield "bytewise", [stream[i : i + 1] for i in range(len(stream))]
    for i in range(1, len(stream)):
        yield f"split at {i}", [stream[:i], stream[i:]]


def feed_all(chunks: list[bytes], parser: EventParser | None = None) -> list[MessageEvent]:
    parser = parser or EventParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    parser.close()
    return events


def test_chunkings_cover_every_split() -> None:
    names = [name for name, _ in chunkings(b"abc")]
    assert names == ["whole", "bytewise", "split at 1", "split at 2"]
    assert all(b"".join(chunks) == b"abc" for _, chunks in chunkings(b"abc"))


@dataclass(frozen=True)
class Vector:
    stream: bytes
    events: list[MessageEvent]
    retry: int | None = None
    last_event_id: str = ""
    notes: list[str] = field(default_factory=list)


VECTORS: dict[str, Vector] = {
    # 1. A lone CR ends a line.
    "1-lone-cr": Vector(b"data: a\rdata: b\r\r", [M("a\nb")]),
    # 2. CRLF (split at every point below, including between CR and LF).
    "2-crlf": Vector(b"data: a\r\ndata: b\r\n\r\n", [M("a\nb")]),
    "2-cr-cr-dispatches": Vector(b"data: x\r\r", [M("x")]),
    # 3. One BOM is stripped; a second one is part of the field name, dropping that field.
    "3-bom": Vector(b"\xef\xbb\xbfdata: a\n\n", [M("a")]),
    "3-double-bom": Vector(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [M("b")]),
    # 4. Exactly one leading space is stripped; a TAB is kept.
    "4-two-spaces": Vector(b"data:  a\n\n", [M(" a")]),
    "4-tab": Vector(b"data:\ta\n\n", [M("\ta")]),
    "4-no-space": Vector(b"data:a\n\n", [M("a")]),
    # 5. Empty data lines; one trailing LF removed only.
    "5-bare-data": Vector(b"data\n\n", [M("")]),
    "5-two-bare-data": Vector(b"data\ndata\n\n", [M("\n")]),
    "5-trailing-empties": Vector(b"data: a\ndata:\ndata:\n\n", [M("a\n\n")]),
    # 6. No phantom events; the event type does not leak into the next block.
    "6-comment-block": Vector(b"id: 1\ndata: a\n\n: ping\n\n", [M("a", id="1")], None, "1"),
    "6-event-no-data": Vector(b"event: foo\n\ndata: x\n\n", [M("x")]),
    "6-retry-only": Vector(b"retry: 10\n\n", [], 10),
    # 7. The incomplete final event is dropped, its id never committed.
    "7-incomplete": Vector(b"data: a\n\nid: 7\ndata: b", [M("a")]),
    # 8. Id semantics.
    "8-id-persists": Vector(
        b"id: 1\ndata: a\n\ndata: b\n\n", [M("a", id="1"), M("b", id="1")], None, "1"
    ),
    "8-id-only-block": Vector(b"id: 5\n\ndata: x\n\n", [M("x", id="5")], None, "5"),
    "8-bare-id-resets": Vector(b"id: 3\n\nid\ndata: c\n\n", [M("c", id="")]),
    "8-nul-id-ignored": Vector(b"id: 3\n\nid: a\x00b\ndata: x\n\n", [M("x", id="3")], None, "3"),
    "8-nul-id-ignored-fresh": Vector(b"id: a\x00b\ndata: x\n\n", [M("x")]),
    # 9. Retry: ASCII digits only, base 10, leading zeros fine; anything else ignored.
    "9-leading-zero": Vector(b"retry: 03000\n\n", [], 3000),
    **{
        f"9-invalid-{i}": Vector(b"retry: 1000\n" + bad + b"\n\n", [], 1000)
        for i, bad in enumerate(
            [
                b"retry: 1000x",
                b"retry: -5",
                b"retry:  5",
                b"retry: +5",
                b"retry: 1_000",
                "retry: \uff15".encode(),  # FULLWIDTH DIGIT FIVE
                b"retry",
                b"retry:",
            ]
        )
    },
    # 10. Only CR and LF break lines (not VT, FF, FS/GS/RS, NEL, U+2028/2029).
    "10-other-breaks": Vector(
        "data: a\vb\fc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\n\n".encode(),
        [M("a\vb\fc\x1cd\x1de\x1ef\x85g\u2028h\u2029i")],
    ),
    # 11. UTF-8 with replacement, whatever the charset; a 3-byte character at every split.
    "11-invalid-byte": Vector(b"data: \xff\n\ndata: next\n\n", [M("\ufffd"), M("next")]),
    "11-multibyte": Vector(b"data: ok\xe2\x80\xa6\n\n", [M("ok\u2026")]),
    "11-four-byte": Vector(
        "event: \U0001f600\ndata: \U0001f600\n\n".encode(), [M("\U0001f600", "\U0001f600")]
    ),
    "11-truncated-sequence": Vector(b"data: \xe2\x80\n\n", [M("\ufffd")]),
    # 12. Field names are literal and case-sensitive.
    "12-case": Vector(b"Data: x\n\n", []),
    "12-nul-in-name": Vector(b"data\x00: x\n\n", []),
    "12-leading-space-name": Vector(b" data: x\n\n", []),
    "12-unknown-field": Vector(b"foo: bar\n\n", []),
    "12-colons-in-value": Vector(b"data: a:b: c\n\n", [M("a:b: c")]),
    # Event types, and mixed terminators in one stream.
    "event-type": Vector(b"event: add\ndata: 1\n\ndata: 2\n\n", [M("1", "add"), M("2")]),
    "mixed-terminators": Vector(b"data: a\r\ndata: b\rdata: c\n\r\n", [M("a\nb\nc")]),
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_vector_in_every_chunking(name: str) -> None:
    vector = VECTORS[name]
    for how, chunks in chunkings(vector.stream):
        parser = EventParser()
        assert feed_all(chunks, parser) == vector.events, how
        assert parser.retry == vector.retry, how
        assert parser.last_event_id == vector.last_event_id, how


# Vectors 19-20 (server side): what the encoder writes for them must parse back to exactly the
# intended events, in every chunking and with every separator.


def encoded(*events: ServerSentEvent) -> bytes:
    return b"".join(event.encode() for event in events)


def server_vectors(sep: str) -> dict[str, Vector]:
    def sse(data: object = None, **fields: object) -> ServerSentEvent:
        return ServerSentEvent(data, sep=sep, **fields)  # type: ignore[arg-type]

    return {
        # 19. Data is split on every line break; a multi-line comment is several ":" lines.
        "19-data-split": Vector(encoded(sse("a\rb\r\nc\nd")), [M("a\nb\nc\nd")]),
        "19-comment-lines": Vector(encoded(sse(comment="a\nb")), []),
        "19-comment-and-data": Vector(encoded(sse("x", comment="a\r\nb\rc")), [M("x")]),
        # Field-like text inside data stays data: no injected event type, id or retry.
        "19-injection-in-data": Vector(
            encoded(sse("x\nevent: spoof\rid: 666\r\nretry: 1\n\ndata: evil")),
            [M("x\nevent: spoof\nid: 666\nretry: 1\n\ndata: evil")],
        ),
        "19-all-fields": Vector(
            encoded(sse("d\ne", event="up", id="7", retry=1500, comment="c")),
            [M("d\ne", "up", "7")],
            1500,
            "7",
        ),
        "19-int-id": Vector(encoded(sse("x", id=42)), [M("x", id="42")], None, "42"),
        # 20. Byte-exact frames: the leading space survives, empty data dispatches, an
        # id-only frame advances the cursor without dispatching.
        "20-leading-space": Vector(encoded(sse(" x")), [M(" x")]),
        "20-empty-data": Vector(encoded(sse("")), [M("")]),
        "20-id-only": Vector(encoded(sse(id="9")), [], None, "9"),
        "20-id-only-then-event": Vector(
            encoded(sse(id="9"), sse("after")), [M("after", id="9")], None, "9"
        ),
        "20-tricky-text": Vector(
            encoded(sse(":  \ufeff\x00\v\u2028", event=" e ", id="é…")),
            [M(":  \ufeff\x00\v\u2028", " e ", "é…")],
            None,
            "é…",
        ),
        "20-stream": Vector(
            encoded(sse("a", id="1"), sse(comment="ping"), sse("b", event="t"), sse(retry=0)),
            [M("a", id="1"), M("b", "t", "1")],
            0,
            "1",
        ),
    }


SERVER_VECTOR_NAMES = list(server_vectors("\n"))


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("name", SERVER_VECTOR_NAMES)
def test_encoded_vectors_19_20_in_every_chunking(name: str, sep: str) -> None:
    vector = server_vectors(sep)[name]
    assert not vector.stream.startswith(b"\xef\xbb\xbf")  # no BOM, ever
    vector.stream.decode("utf-8")  # valid UTF-8
    for how, chunks in chunkings(vector.stream):
        parser = EventParser()
        assert feed_all(chunks, parser) == vector.events, how
        assert parser.retry == vector.retry, how
        assert parser.last_event_id == vector.last_event_id, how


def test_parse_matches_the_incremental_parser() -> None:
    for vector in VECTORS.values():
        assert parse(vector.stream) == vector.events


def test_split_crlf_dispatches_nothing_at_the_chunk_boundary() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [M("a\nb")]


def test_cr_at_chunk_end_then_lf_is_one_terminator() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF: not a blank line
    assert parser.feed(b"\n") == [M("a")]


def test_cr_cr_dispatches_without_waiting_for_more_bytes() -> None:
    parser = EventParser()
    assert parser.feed(b"data: x\r\r") == [M("x")]


def test_cr_at_chunk_end_then_empty_chunks() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n\n") == [M("a")]


def test_bom_split_across_chunks() -> None:
    parser = EventParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert parser.feed(b"\xbfdata: a\n\n") == [M("a")]


def test_partial_bom_then_other_bytes_is_not_a_bom() -> None:
    # b"\xef\xbb" followed by "d" is not a BOM: the bytes stay (as replacement characters)
    # in the first line, whose field name is then not "data".
    assert feed_all([b"\xef\xbb", b"data: a\n\ndata: b\n\n"]) == [M("b")]


def test_bom_stripped_again_on_a_new_stream_after_close() -> None:
    parser = EventParser()
    assert parser.feed(b"\xef\xbb\xbfid: 4\ndata: a\n\n") == [M("a", id="4")]
    parser.close()
    # A reconnect's first chunk is a new stream: its BOM goes too; the id is kept (seeded).
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == [M("b", id="4")]


def test_close_drops_incomplete_event_and_keeps_committed_id() -> None:
    parser = EventParser()
    assert parser.feed(b"id: 1\ndata: a\n\nid: 7\ndata: b") == [M("a", id="1")]
    parser.close()
    assert parser.last_event_id == "1"
    # The stale "b" never appears in the next stream.
    assert parser.feed(b"data: c\n\n") == [M("c", id="1")]


def test_cr_before_close_does_not_eat_the_next_streams_lf() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    parser.close()
    assert parser.feed(b"\ndata: b\n\n") == [M("b")]


def test_seeded_last_event_id() -> None:
    parser = EventParser(last_event_id="42")
    assert parser.feed(b"data: x\n\n") == [M("x", id="42")]


def test_multibyte_character_split_byte_by_byte_in_event_and_id() -> None:
    stream = "id: é…\nevent: ü\ndata: 日本\n\n".encode()
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == [M("日本", "ü", "é…")]


# A hostile server must not crash the client with a retry value int() refuses (more than 4300
# digits) or make it convert megabytes of digits: values above MAX_RETRY are ignored.


@pytest.mark.parametrize("digits", [21, 4300, 4301, 100_000])
def test_huge_retry_is_ignored_without_converting_it(digits: int) -> None:
    parser = EventParser()
    stream = b"retry: 1000\n\nretry: " + b"1" * digits + b"\ndata: x\n\n"
    assert parser.feed(stream) == [M("x")]
    assert parser.retry == 1000  # the previous valid value is kept


def test_retry_bound_is_inclusive() -> None:
    assert MAX_RETRY == 2**64 - 1
    parser = EventParser()
    parser.feed(f"retry: {MAX_RETRY}\n\n".encode())
    assert parser.retry == MAX_RETRY
    parser.feed(f"retry: {MAX_RETRY + 1}\n\n".encode())
    assert parser.retry == MAX_RETRY


def test_leading_zeros_do_not_count_towards_the_retry_bound() -> None:
    parser = EventParser()
    parser.feed(b"retry: " + b"0" * 10_000 + b"2500\n\n")
    assert parser.retry == 2500
    parser.feed(b"retry: " + b"0" * 10_000 + b"\n\n")
    assert parser.retry == 0


def test_huge_retry_fed_byte_by_byte() -> None:
    stream = b"retry: 7\n\nretry: " + b"9" * 5000 + b"\ndata: x\n\n"
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == [M("x")]


def test_invalid_max_event_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        EventParser(max_event_size=0)


# ----------------------------------------------------------------------- 13. bounded memory


def test_one_mib_data_line_is_delivered_intact() -> None:
    value = (b"0123456789abcdef" * 65536)[: 1 << 20]
    stream = b"data: " + value + b"\n\n"
    assert len(stream) < DEFAULT_MAX_EVENT_SIZE
    for chunk_size in (len(stream), 65536, 1000):
        parser = EventParser()
        events = [
            e
            for i in range(0, len(stream), chunk_size)
            for e in parser.feed(stream[i : i + chunk_size])
        ]
        assert events == [M(value.decode())]


@pytest.mark.parametrize("chunk_size", [None, 4096])
def test_line_at_the_cap_passes_and_cap_plus_one_raises(chunk_size: int | None) -> None:
    cap = 64 * 1024

    def run(line: bytes) -> list[MessageEvent]:
        parser = EventParser(max_event_size=cap)
        stream = line + b"\n\n"
        size = chunk_size or len(stream)
        return [e for i in range(0, len(stream), size) for e in parser.feed(stream[i : i + size])]

    exact = b"data: " + b"x" * (cap - 6)
    assert run(exact) == [M("x" * (cap - 6))]
    with pytest.raises(ssehub.EventTooLarge) as info:
        run(exact + b"x")
    assert info.value.limit == cap
    assert isinstance(info.value, ssehub.ParseError)
    assert isinstance(info.value, ssehub.SSEHubError)


def test_event_data_over_the_cap_raises_even_with_short_lines() -> None:
    cap = 10_000
    parser = EventParser(max_event_size=cap)
    line = b"data: 0123456789\n"
    fits = cap // (len(line) - len("data: "))  # each line adds its value and a LF
    for _ in range(fits):
        parser.feed(line)
    with pytest.raises(ssehub.EventTooLarge):
        parser.feed(line)


def test_memory_held_for_an_event_of_short_lines_stays_near_the_cap() -> None:
    # Each data line was kept as its own bytes object (about 35 bytes of overhead for
    # b"xy"): an event of short lines took about 16 times max_event_size.
    cap = 1 << 20
    parser = EventParser(max_event_size=cap)
    chunk = b"data: xy\n" * 8192
    tracemalloc.start()
    try:
        with pytest.raises(ssehub.EventTooLarge):  # noqa: PT012 - fed until it refuses
            while True:
                parser.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * cap + 2 * len(chunk), peak


def test_endless_line_raises_once_the_cap_is_passed() -> None:
    cap = 1 << 20
    chunk = b"x" * 65536
    parser = EventParser(max_event_size=cap)
    fed = 0
    for _ in range(cap // len(chunk)):
        parser.feed(chunk)
        fed += len(chunk)
        # The parser holds the line so far and nothing more.
        assert parser._pending_size == fed
    # One more chunk passes the cap: the error comes now, not after 100 MiB.
    with pytest.raises(ssehub.EventTooLarge):
        parser.feed(chunk)


def test_endless_line_after_a_terminated_line_raises_too() -> None:
    cap = 100_000
    parser = EventParser(max_event_size=cap)
    with pytest.raises(ssehub.EventTooLarge):
        parser.feed(b"data: a\n" + b"y" * (cap + 1))


def test_ten_megabytes_of_small_events_in_64k_chunks() -> None:
    frame = b"id: 12345\nevent: tick\ndata: " + b"p" * 60 + b"\n\n"
    count = 10_000_000 // len(frame)
    stream = frame * count
    parser = EventParser()
    seen = 0
    largest_buffer = 0
    for i in range(0, len(stream), 65536):
        seen += len(parser.feed(stream[i : i + 65536]))
        largest_buffer = max(largest_buffer, parser._pending_size)
    # Work stays linear: nothing accumulates beyond the one partial line at a chunk's end.
    assert seen == count
    assert largest_buffer < len(frame)
    assert parser.last_event_id == "12345"
