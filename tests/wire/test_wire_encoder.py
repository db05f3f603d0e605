"""ServerSentEvent / JSONServerSentEvent: validation (SSE-SPEC.md §5 vector 19), byte-exact
encoding (vector 20), caching, immutability and JSON."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import pytest

import ssehub
from ssehub.wire import MAX_RETRY, JSONServerSentEvent, MessageEvent, ServerSentEvent, _json, parse
from ssehub.wire import event as event_module


class Kind(str, enum.Enum):
    UPDATE = "update"


class Number(enum.IntEnum):
    SEVEN = 7


# ------------------------------------------------------------------ vector 19: injection


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "x\ndata: evil"},
        {"event": "x\rdata: evil"},
        {"event": "x\r\ndata: evil"},
        {"id": "1\r\nevent: spoof"},
        {"id": "1\revent: spoof"},
        {"id": "1\nevent: spoof"},
        {"id": "a\x00"},
        {"retry": "5\nx"},
        {"retry": "5"},
        {"retry": True},
        {"retry": False},
        {"retry": -1},
        {"retry": 1.5},
        {"id": 1.5},
        {"id": True},
        {"event": 5},
        {"comment": 5},
        {"sep": "\n\n"},
        {"sep": ""},
        {"data": "\ud800"},
        {"event": "\udfff"},
        {"id": "\ud800"},
        {"comment": "\ud800"},
    ],
    ids=repr,
)
def test_invalid_fields_raise_a_typed_error(kwargs: dict[str, Any]) -> None:
    data = kwargs.pop("data", "x")
    with pytest.raises(ssehub.EventValidationError) as info:
        ServerSentEvent(data, **kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ssehub.SSEHubError)
    assert info.value.field in {"data", "event", "id", "retry", "comment", "sep"}
    # The same checks guard JSONServerSentEvent.
    kwargs.pop("comment", None)
    if kwargs:
        with pytest.raises(ssehub.EventValidationError):
            JSONServerSentEvent({"a": 1}, **kwargs)


HUGE = 10**5000  # more digits than Python renders as text (sys.get_int_max_str_digits())


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("id", {"id": HUGE}),
        ("retry", {"retry": HUGE}),
        ("retry", {"retry": 2**64}),
        ("data", {"data": HUGE}),
        ("data", {"data": -HUGE}),
    ],
    ids=["huge-id", "huge-retry", "retry-2**64", "huge-data", "huge-negative-data"],
)
def test_huge_ints_raise_the_typed_error(field: str, kwargs: dict[str, Any]) -> None:
    # Not the plain ValueError of int -> str conversion.
    data = kwargs.pop("data", "x")
    with pytest.raises(ssehub.EventValidationError) as info:
        ServerSentEvent(data, **kwargs)
    assert info.value.field == field


def test_huge_json_int_raises_the_typed_error() -> None:
    with pytest.raises(ssehub.EventValidationError) as info:
        JSONServerSentEvent({"n": HUGE})
    assert info.value.field == "data"


def test_retry_up_to_max_retry_is_accepted() -> None:
    wire = ServerSentEvent(retry=MAX_RETRY).encode()
    assert wire == f"retry: {2**64 - 1}\n\n".encode()
    assert ServerSentEvent("x", id=10**4000).id == str(10**4000)  # long but renderable


def test_error_names_the_offending_field() -> None:
    with pytest.raises(ssehub.EventValidationError) as info:
        ServerSentEvent("x", id="a\x00")
    assert info.value.field == "id"
    with pytest.raises(ssehub.EventValidationError) as info:
        ServerSentEvent("ok \ud800")
    assert info.value.field == "data"


def test_data_is_split_on_every_line_break() -> None:
    assert ServerSentEvent("a\rb\r\nc\nd").encode() == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_multi_line_comment() -> None:
    assert ServerSentEvent(comment="a\nb\r\nc\rd").encode() == b": a\n: b\n: c\n: d\n\n"


@pytest.mark.parametrize("retry", [0, 1, 3000, Number.SEVEN])
def test_valid_retry(retry: int) -> None:
    assert ServerSentEvent(retry=retry).encode() == f"retry: {int(retry)}\n\n".encode()


def test_int_id_is_rendered_as_text() -> None:
    event = ServerSentEvent("x", id=42)
    assert event.id == "42"
    assert event.encode() == b"id: 42\ndata: x\n\n"
    assert ServerSentEvent("x", id=Number.SEVEN).id == "7"
    assert ServerSentEvent("x", id=-3).id == "-3"


def test_str_subclasses_are_reduced_to_their_text() -> None:
    event = ServerSentEvent(Kind.UPDATE, event=Kind.UPDATE, id=Kind.UPDATE)
    assert event.encode() == b"id: update\nevent: update\ndata: update\n\n"
    assert type(event.data) is str
    assert type(event.event) is str


def test_numbers_become_data_text() -> None:
    assert ServerSentEvent(5).encode() == b"data: 5\n\n"
    assert ServerSentEvent(2.5).encode() == b"data: 2.5\n\n"
    assert ServerSentEvent(Number.SEVEN).data == "7"


@pytest.mark.parametrize(
    "data", [{"a": 1}, [1, 2], (1,), {1}, frozenset(), b"x", bytearray(b"x"), memoryview(b"x")]
)
def test_repr_prone_data_is_refused_with_a_pointer_to_json(data: object) -> None:
    with pytest.raises(ssehub.EventValidationError, match="JSONServerSentEvent") as info:
        ServerSentEvent(data)
    assert info.value.field == "data"


class Colour(enum.Enum):
    RED = 1


class Perm(enum.IntFlag):
    READ = 4


@pytest.mark.parametrize(
    "data",
    [object(), Colour.RED, Kind, ServerSentEvent("x"), complex(1, 2), type("Any", (), {})()],
    ids=["object", "plain-enum", "class", "event", "complex", "custom"],
)
def test_data_without_a_text_form_is_refused_not_sent_as_repr(data: object) -> None:
    # str() of these is a repr ("<object object at 0x...>", "Colour.RED"), never wire data.
    with pytest.raises(ssehub.EventValidationError, match="JSONServerSentEvent") as info:
        ServerSentEvent(data)
    assert info.value.field == "data"
    assert type(data).__name__ in str(info.value)


def test_number_subclasses_are_rendered_by_value() -> None:
    class Ratio(float):
        def __repr__(self) -> str:
            return "Ratio!"

    assert ServerSentEvent(Perm.READ).encode() == b"data: 4\n\n"
    assert ServerSentEvent(Ratio(0.25)).encode() == b"data: 0.25\n\n"


def test_str_int_float_match_sse_starlette() -> None:
    starlette_event = pytest.importorskip("sse_starlette.event")
    for data in ["text", "two\nlines", 42, -7, 1.5, 1e100, Number.SEVEN]:
        theirs = starlette_event.ServerSentEvent(data, sep="\n").encode()
        if isinstance(data, enum.Enum):
            theirs = b"data: 7\n\n"  # sse-starlette's str() gives the name on Python 3.10
        assert ServerSentEvent(data).encode() == theirs, data


def test_bool_data_is_refused() -> None:
    with pytest.raises(ssehub.EventValidationError, match="JSONServerSentEvent"):
        ServerSentEvent(data=True)


# -------------------------------------------------------------- vector 20: byte-exact output


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (ServerSentEvent(" x"), b"data:  x\n\n"),
        (ServerSentEvent(""), b"data: \n\n"),
        (ServerSentEvent(id="9"), b"id: 9\n\n"),
        (ServerSentEvent(id=""), b"id: \n\n"),
        (ServerSentEvent(), b"\n"),
        (ServerSentEvent("a\n"), b"data: a\ndata: \n\n"),
        (
            ServerSentEvent("d", event="e", id="i", retry=5, comment="c"),
            b": c\nid: i\nevent: e\ndata: d\nretry: 5\n\n",
        ),
        (ServerSentEvent("é…日本"), "data: é…日本\n\n".encode()),
    ],
    ids=repr,
)
def test_byte_exact_encoding(event: ServerSentEvent, wire: bytes) -> None:
    assert event.encode() == wire
    assert not event.encode().startswith(b"\xef\xbb\xbf")


def test_leading_space_survives_the_round_trip() -> None:
    assert parse(ServerSentEvent(" x").encode()) == [MessageEvent(" x")]
    assert parse(ServerSentEvent(id="9").encode()) == []  # id-only frame: no dispatch


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
def test_separators(sep: str) -> None:
    event = ServerSentEvent("a\nb", event="e", id="1", retry=3, comment="c", sep=sep)
    expected = sep.join([": c", "id: 1", "event: e", "data: a", "data: b", "retry: 3", "", ""])
    assert event.encode() == expected.encode()
    assert event.sep == sep
    assert parse(event.encode()) == [MessageEvent("a\nb", "e", "1")]


def test_default_separator_is_lf() -> None:
    assert ServerSentEvent("x").sep == "\n"
    assert ServerSentEvent("x", sep=None).encode() == b"data: x\n\n"


def test_output_is_valid_utf8_without_bom() -> None:
    wire = ServerSentEvent("\ufeffstarts with a BOM char", comment="\u2028").encode()
    assert not wire.startswith(b"\xef\xbb\xbf")
    wire.decode("utf-8")


# ----------------------------------------------------------------- caching and immutability


def test_encode_is_cached() -> None:
    event = ServerSentEvent("x", id=1)
    assert event.encode() is event.encode()
    json_event = JSONServerSentEvent({"a": 1})
    assert json_event.encode() is json_event.encode()


@pytest.mark.parametrize("name", ["data", "event", "id", "retry", "comment", "sep", "other"])
def test_events_are_immutable(name: str) -> None:
    event = ServerSentEvent("x", event="e", id="1")
    with pytest.raises(AttributeError):
        setattr(event, name, "changed")
    with pytest.raises(AttributeError):
        delattr(event, name)
    assert event.encode() == b"id: 1\nevent: e\ndata: x\n\n"


@pytest.mark.parametrize("cls", [ServerSentEvent, JSONServerSentEvent])
@pytest.mark.parametrize("name", ["_state", "_encoded", "_data", "_json_data", "__class__"])
def test_private_state_is_immutable_too(cls: type[ServerSentEvent], name: str) -> None:
    event = cls("x", id="1")
    wire = event.encode()
    with pytest.raises(AttributeError, match="immutable"):
        setattr(event, name, b"evil")
    with pytest.raises(AttributeError, match="immutable"):
        delattr(event, name)
    assert event.encode() is wire
    assert type(event) is cls


def test_pickle_and_copy_keep_the_event() -> None:
    import copy
    import pickle

    for event in (
        ServerSentEvent("a\nb", event="e", id=3, retry=5, comment="c", sep="\r\n"),
        JSONServerSentEvent({"k": [1]}),
    ):
        for clone in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
            assert type(clone) is type(event)
            assert clone == event
            assert clone.encode() == event.encode()
            assert repr(clone) == repr(event)
            with pytest.raises(AttributeError):
                clone._state = ()


def test_equality_hash_and_repr() -> None:
    a = ServerSentEvent("x", id=1)
    b = ServerSentEvent("x", id="1")
    assert a == b
    assert hash(a) == hash(b)
    assert a != ServerSentEvent("y", id=1)
    assert a != "x"
    assert repr(a) == "ServerSentEvent(data='x', id='1')"
    assert repr(ServerSentEvent("x", sep="\r")) == "ServerSentEvent(data='x', sep='\\r')"


def test_replace_validates_like_a_new_event() -> None:
    event = ServerSentEvent("x", event="e")
    assert event.replace(id="2").encode() == b"id: 2\nevent: e\ndata: x\n\n"
    with pytest.raises(ssehub.EventValidationError):
        event.replace(id="2\n")
    with pytest.raises(TypeError, match="unknown"):
        event.replace(colour="red")


# ------------------------------------------------------------------------------- JSON


def test_json_event_is_compact_utf8_json() -> None:
    event = JSONServerSentEvent({"b": [1, 2], "é": "日本", "n": None}, event="j", id=3)
    assert event.encode() == 'id: 3\nevent: j\ndata: {"b":[1,2],"é":"日本","n":null}\n\n'.encode()
    assert event.data is not None
    assert json.loads(event.data) == {"b": [1, 2], "é": "日本", "n": None}


def test_json_strings_with_line_breaks_stay_on_one_line() -> None:
    event = JSONServerSentEvent({"text": "a\nb\rc\u2028"})
    assert event.encode().count(b"\n") == 2
    assert json.loads(parse(event.encode())[0].data) == {"text": "a\nb\rc\u2028"}


def test_json_none_means_no_data_field() -> None:
    assert JSONServerSentEvent(None, id="1").encode() == b"id: 1\n\n"


def test_json_scalars() -> None:
    assert JSONServerSentEvent("x").encode() == b'data: "x"\n\n'
    assert JSONServerSentEvent(data=True).encode() == b"data: true\n\n"
    assert JSONServerSentEvent([]).encode() == b"data: []\n\n"


def test_json_classmethod_encodes_once() -> None:
    assert ServerSentEvent.json({"a": 1}, event="e").encode() == b'event: e\ndata: {"a":1}\n\n'
    # Called on the JSON subclass, the value must not be JSON-encoded a second time.
    assert JSONServerSentEvent.json({"a": 1}).encode() == b'data: {"a":1}\n\n'


def test_json_refuses_non_serialisable_values() -> None:
    with pytest.raises(ssehub.EventValidationError, match="JSON") as info:
        JSONServerSentEvent({"a": object()})
    assert info.value.field == "data"
    with pytest.raises(ssehub.EventValidationError):
        ServerSentEvent.json(object())


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True]}, {"é": "…"}, [], "x", 3, {1: 2}])
def test_stdlib_json_matches_the_active_encoder(value: Any) -> None:
    assert _json._stdlib_dumps(value) == _json.dumps(value)


def test_stdlib_json_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_module, "dumps", _json._stdlib_dumps)
    event = JSONServerSentEvent({"é": [1, None]}, event="j")
    assert event.encode() == 'event: j\ndata: {"é":[1,null]}\n\n'.encode()
    with pytest.raises(ssehub.EventValidationError):
        JSONServerSentEvent({"x": float("nan")})  # not JSON: browsers' JSON.parse rejects it
    with pytest.raises(ssehub.EventValidationError):
        JSONServerSentEvent({"x": object()})


def test_orjson_is_used_when_installed() -> None:
    pytest.importorskip("orjson")
    assert _json.dumps is not _json._stdlib_dumps
    # Values orjson refuses fall back to the standard library (same compact JSON).
    assert _json.dumps({"big": 2**70}) == '{"big":1180591620717411303424}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_floats_are_refused_with_and_without_orjson(
    bad: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # orjson alone would silently write null; the module refuses, like the stdlib.
    with pytest.raises(ssehub.EventValidationError):
        JSONServerSentEvent({"x": [1, bad]})
    monkeypatch.setattr(event_module, "dumps", _json._stdlib_dumps)
    with pytest.raises(ssehub.EventValidationError):
        JSONServerSentEvent({"x": [1, bad]})


def test_real_nulls_still_encode() -> None:
    assert JSONServerSentEvent({"a": None, "s": "null"}).encode() == (
        b'data: {"a":null,"s":"null"}\n\n'
    )


# ------------------------------------------------- JSON: the same rules with and without orjson


class Ratio(float):
    pass


@dataclasses.dataclass
class Point:
    x: int = 1


Pair = collections.namedtuple("Pair", "a b")
SOME_UUID = uuid.UUID(int=1)

JSON_ACCEPTED: dict[str, tuple[Any, str]] = {
    "plain-enum": (Colour.RED, "1"),
    "int-enum": (Number.SEVEN, "7"),
    "str-enum": (Kind.UPDATE, '"update"'),
    "uuid": (SOME_UUID, '"00000000-0000-0000-0000-000000000001"'),
    "enum-in-list": ([Colour.RED, {"k": Number.SEVEN}], '[1,{"k":7}]'),
    "tuple": ((1, "a"), '[1,"a"]'),
    "namedtuple": (Pair(1, 2), "[1,2]"),
    "float-subclass": (Ratio(0.5), "0.5"),
    "ordered-dict": (collections.OrderedDict(b=1, a=2), '{"b":1,"a":2}'),
    "big-int": (2**70, "1180591620717411303424"),
    "int-key": ({1: 2}, '{"1":2}'),
    "float-key": ({1.5: 1}, '{"1.5":1}'),
    "bool-and-none-keys": ({True: 1, None: 2}, '{"true":1,"null":2}'),
    "int-enum-key": ({Number.SEVEN: 1}, '{"7":1}'),
    "str-enum-key": ({Kind.UPDATE: 1}, '{"update":1}'),
}

JSON_REFUSED: dict[str, Any] = {
    "date": datetime.date(2020, 1, 1),
    "datetime": datetime.datetime(2020, 1, 1, 12, 30, tzinfo=datetime.timezone.utc),
    "time": datetime.time(12, 30),
    "dataclass": Point(),
    "decimal": decimal.Decimal("1.5"),
    "set": {1},
    "bytes": b"x",
    "object": object(),
    "nested-date": {"when": [datetime.date(2020, 1, 1)]},
    "enum-of-date": enum.Enum("When", {"D": datetime.date(2020, 1, 1)})["D"],
    "date-key": {datetime.date(2020, 1, 1): 1},
    "plain-enum-key": {Colour.RED: 1},
    "uuid-key": {SOME_UUID: 1},
    "tuple-key": {(1,): 1},
    "nan": {"x": [float("nan")]},
}


def json_paths() -> list[Any]:
    """The stdlib encoder, and orjson's when it is installed (both whatever is active)."""
    paths = [pytest.param(_json._stdlib_dumps, id="stdlib")]
    orjson_dumps = _json._load_orjson()
    if orjson_dumps is not None:
        paths.append(pytest.param(orjson_dumps, id="orjson"))
    return paths


@pytest.mark.parametrize("dumps", json_paths())
@pytest.mark.parametrize("name", list(JSON_ACCEPTED))
def test_json_accepts_the_same_values_on_both_paths(
    name: str, dumps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, text = JSON_ACCEPTED[name]
    monkeypatch.setattr(event_module, "dumps", dumps)
    assert JSONServerSentEvent(value).encode() == f"data: {text}\n\n".encode()
    assert ServerSentEvent.json(value).data == text


@pytest.mark.parametrize("dumps", json_paths())
@pytest.mark.parametrize("name", list(JSON_REFUSED))
def test_json_refuses_the_same_values_on_both_paths(
    name: str, dumps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JSONServerSentEvent(date(2020, 1, 1)) used to encode with orjson and fail without it.
    monkeypatch.setattr(event_module, "dumps", dumps)
    with pytest.raises(ssehub.EventValidationError) as info:
        JSONServerSentEvent(JSON_REFUSED[name])
    assert info.value.field == "data"
    with pytest.raises(ssehub.EventValidationError):
        ServerSentEvent.json(JSON_REFUSED[name])


def test_both_json_paths_raise_the_same_error_types() -> None:
    orjson_dumps = _json._load_orjson()
    if orjson_dumps is None:
        pytest.skip("orjson is not installed")
    for value in JSON_REFUSED.values():
        errors = []
        for dumps in (_json._stdlib_dumps, orjson_dumps):
            with pytest.raises((TypeError, ValueError)) as info:
                dumps(value)
            errors.append(type(info.value))
        assert errors[0] is errors[1], value


@pytest.mark.parametrize("encoder", ["active", "stdlib"])
def test_json_too_deep_to_serialise_is_the_typed_error(
    encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Data parsed just below json.loads' depth limit can be too deep for dumps (a few frames
    # deeper): it must be the typed error (a 400 on the hub), not a RecursionError (a 500).
    if encoder == "stdlib":
        monkeypatch.setattr(event_module, "dumps", _json._stdlib_dumps)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ssehub.EventValidationError, match="not JSON-serialisable") as info:
        ServerSentEvent.json(deep)
    assert info.value.field == "data"
