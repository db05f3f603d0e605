"""Declaring protocols and encoding/decoding typed payloads of every supported flavour."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any, Literal, TypedDict

import msgspec
import pydantic
import pytest

from ssehub import ConfigurationError, SchemaValidationError
from ssehub.protocols import EventProtocol, TypedEvent
from ssehub.wire import MessageEvent, parse


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    points: list[Point]
    color: Color
    tags: dict[str, float] = dataclasses.field(default_factory=dict)
    kind: Literal["open", "closed"] = "closed"
    pair: tuple[int, str] = (0, "")
    when: datetime.datetime | None = None
    uid: uuid.UUID | None = None


class Moved(TypedDict):
    id: str
    dx: float


class Renamed(TypedDict, total=False):
    id: str
    name: str


class PydModel(pydantic.BaseModel):
    name: str
    count: int = pydantic.Field(ge=0)


class MsgStruct(msgspec.Struct):
    name: str
    count: int


def roundtrip(proto: EventProtocol, kind: str, payload: Any, **kw: Any) -> TypedEvent[Any]:
    """Encode, put on the wire, parse with the real parser, decode."""
    event = proto.encode(kind, payload, **kw)
    [message] = parse(event.encode())
    return proto.decode(message)


@pytest.fixture
def proto() -> EventProtocol:
    p = EventProtocol("shapes", ["1", "2"], features=["batching"])
    p.kind("shape", Shape)
    p.kind("moved", Moved, batchable=True)
    p.kind("renamed", Renamed, versions=["2"])
    p.kind("pyd", PydModel)
    p.kind("msg", MsgStruct)
    p.kind("numbers", list[int])
    return p


def test_dataclass_roundtrip_with_nested_types(proto: EventProtocol) -> None:
    shape = Shape(
        name="tri",
        points=[Point(0, 0), Point(1, 2, "b")],
        color=Color.BLUE,
        tags={"w": 1.5},
        kind="open",
        pair=(3, "x"),
        when=datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
        uid=uuid.UUID(int=7),
    )
    event = proto.encode("shape", shape, id=41)
    assert event.event == "shape"
    assert event.id == "41"
    assert event.data is not None
    assert '"color":"blue"' in event.data
    typed = roundtrip(proto, "shape", shape, id=41)
    assert typed == TypedEvent("shape", shape, "41")


def test_float_field_accepts_int_and_decodes_as_float(proto: EventProtocol) -> None:
    typed = roundtrip(proto, "moved", {"id": "a", "dx": 2})
    assert typed.payload == {"id": "a", "dx": 2.0}
    assert isinstance(typed.payload["dx"], float)


def test_typeddict_required_and_optional_keys(proto: EventProtocol) -> None:
    assert roundtrip(proto, "renamed", {"id": "a"}).payload == {"id": "a"}
    with pytest.raises(SchemaValidationError, match="missing keys"):
        proto.encode("moved", {"id": "a"})
    with pytest.raises(SchemaValidationError, match="unknown keys"):
        proto.encode("moved", {"id": "a", "dx": 1.0, "extra": 1})


def test_pydantic_and_msgspec_payloads(proto: EventProtocol) -> None:
    assert roundtrip(proto, "pyd", PydModel(name="a", count=2)).payload == PydModel(
        name="a", count=2
    )
    assert roundtrip(proto, "msg", MsgStruct("a", 2)).payload == MsgStruct("a", 2)
    # Both libraries can hold invalid values (model_construct, unchecked Struct init):
    # the server side refuses them before they reach the wire.
    with pytest.raises(SchemaValidationError) as info:
        proto.encode("pyd", PydModel.model_construct(name="a", count=-1))
    assert info.value.kind == "pyd"
    with pytest.raises(SchemaValidationError):
        proto.encode("msg", MsgStruct("a", "not an int"))  # type: ignore[arg-type]


def test_plain_type_hint_payload(proto: EventProtocol) -> None:
    assert roundtrip(proto, "numbers", [1, 2, 3]).payload == [1, 2, 3]
    with pytest.raises(SchemaValidationError, match=r"\[1\]"):
        proto.encode("numbers", [1, "2"])


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (Point(1, 2), "expected Shape"),
        (Shape("s", [Point(1, y=True)], Color.RED), r"points\[0\]\.y: expected int, got bool"),
        (Shape("s", [], "green"), "expected Color"),  # type: ignore[arg-type]
        (Shape("s", [], Color.RED, kind="half"), "expected one of"),  # type: ignore[arg-type]
        (Shape("s", [], Color.RED, tags={"w": float("nan")}), "finite"),
    ],
)
def test_invalid_payload_is_refused_on_encode(
    proto: EventProtocol, payload: Any, fragment: str
) -> None:
    with pytest.raises(SchemaValidationError, match=fragment) as info:
        proto.encode("shape", payload)
    assert info.value.kind == "shape"


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[1,2]",
        '{"name":"s","points":[],"color":"blue","bogus":1}',
        '{"name":"s","points":[{"x":1}],"color":"blue"}',
        '{"name":"s","points":[],"color":"blue","when":"yesterday"}',
        '{"name":"s","points":[],"color":"blue","uid":"nope"}',
        '{"name":"s","points":[],"color":"blue","pair":[1]}',
    ],
)
def test_invalid_payload_is_refused_on_decode(proto: EventProtocol, data: str) -> None:
    with pytest.raises(SchemaValidationError) as info:
        proto.decode(MessageEvent(data=data, event="shape"))
    assert info.value.kind == "shape"


def test_decode_refuses_pydantic_and_msgspec_mismatches(proto: EventProtocol) -> None:
    with pytest.raises(SchemaValidationError):
        proto.decode(MessageEvent(data='{"name":"a","count":-1}', event="pyd"))
    with pytest.raises(SchemaValidationError):
        proto.decode(MessageEvent(data='{"name":"a","count":"x"}', event="msg"))


def test_kinds_per_version(proto: EventProtocol) -> None:
    assert "renamed" not in [k.name for k in proto.kinds("1")]
    assert "renamed" in [k.name for k in proto.kinds("2")]
    with pytest.raises(SchemaValidationError):
        proto.encode("renamed", {"id": "a"}, version="1")
    with pytest.raises(SchemaValidationError, match="not an event kind"):
        proto.decode(MessageEvent(data="{}", event="renamed"), version="1")
    assert proto.describe()["kinds"]["1"] == ["shape", "moved", "pyd", "msg", "numbers"]


def test_same_kind_with_different_payloads_in_disjoint_versions() -> None:
    p = EventProtocol("p", [1, 2])
    v1 = p.kind("tick", int, versions=[1])
    v2 = p.kind("tick", str, versions=[2])
    assert p.get_kind("tick", "1") is v1
    assert p.get_kind("tick", "2") is v2
    assert v2.decode(MessageEvent(data='"x"', event="tick")) == "x"
    with pytest.raises(ConfigurationError, match="already declared"):
        p.kind("tick", float, versions=[2])


def test_kind_decode_checks_the_event_type() -> None:
    p = EventProtocol("p", ["1"])
    tick = p.kind("tick", int)
    with pytest.raises(SchemaValidationError, match="event type is 'message'"):
        tick.decode(MessageEvent(data="1"))
    assert tick.load(3) == 3
    with pytest.raises(SchemaValidationError):
        tick.load("3")
    assert tick.validate(3) == 3
    with pytest.raises(SchemaValidationError):
        tick.validate("3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "versions", "features"),
    [
        ("", ["1"], ()),
        ("a b", ["1"], ()),
        ("p", [], ()),
        ("p", ["1", "1"], ()),
        ("p", ["1"], ["x y"]),
    ],
)
def test_invalid_protocol_declarations(name: str, versions: list[str], features: Any) -> None:
    with pytest.raises(ConfigurationError):
        EventProtocol(name, versions, features=features)


@pytest.mark.parametrize("name", ["protocol.handshake", "", "a\nb"])
def test_invalid_or_reserved_kind_names(name: str) -> None:
    with pytest.raises(ConfigurationError):
        EventProtocol("p", ["1"]).kind(name, int)


def test_unsupported_payload_types_and_unknown_versions() -> None:
    p = EventProtocol("p", ["1"])
    with pytest.raises(ConfigurationError, match="unsupported"):
        p.kind("bytes", bytes)
    with pytest.raises(ConfigurationError, match="keys"):
        p.kind("intkeys", dict[int, str])
    with pytest.raises(ConfigurationError, match="unknown versions"):
        p.kind("tick", int, versions=["9"])
    with pytest.raises(ConfigurationError):
        p.kinds("9")


def test_retry_and_id_are_passed_through() -> None:
    p = EventProtocol("p", ["1"])
    tick = p.kind("tick", int)
    event = tick.encode(5, id="a-1", retry=3000)
    assert event.encode() == b"id: a-1\nevent: tick\ndata: 5\nretry: 3000\n\n"


class AliasedModel(pydantic.BaseModel):
    user_id: int = pydantic.Field(alias="userId")


class StrictComputed(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    w: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return 2 * self.w


def test_pydantic_models_with_aliases_or_computed_fields_round_trip() -> None:
    # Both were refused as invalid on encode: the dump was by field name (validated back by
    # alias) and carried the computed field (refused by extra="forbid").
    p = EventProtocol("p", ["1"])
    p.kind("aliased", AliasedModel)
    p.kind("strict", StrictComputed)
    aliased = roundtrip(p, "aliased", AliasedModel(userId=7))
    assert aliased.payload == AliasedModel(userId=7)
    assert p.encode("aliased", AliasedModel(userId=7)).data == '{"userId":7}'
    strict = roundtrip(p, "strict", StrictComputed(w=2))
    assert strict.payload == StrictComputed(w=2)
    assert strict.payload.double == 4


@dataclasses.dataclass
class FloatBox:
    x: float


def test_numbers_and_nesting_beyond_json_are_the_typed_error() -> None:
    # They raised OverflowError and RecursionError, which an app skipping bad events with
    # `except SchemaValidationError` did not catch.
    p = EventProtocol("p", ["1"])
    p.kind("f", FloatBox)
    p.kind("a", Any)
    with pytest.raises(SchemaValidationError, match="finite float, got a larger int"):
        p.encode("f", FloatBox(10**400))
    with pytest.raises(SchemaValidationError, match="finite float, got a larger int"):
        p.decode(MessageEvent(data='{"x":1' + "0" * 400 + "}", event="f"))
    with pytest.raises(SchemaValidationError, match="nested too deeply"):
        p.decode(MessageEvent(data="[" * 100_000 + "]" * 100_000, event="a"))


@dataclasses.dataclass
class Painted:
    color: Literal[Color.RED]


def test_an_enum_member_in_a_literal_round_trips() -> None:
    # It encoded as its value and was then refused on decode (the value is not the member).
    p = EventProtocol("p", ["1"])
    p.kind("painted", Painted)
    event = p.encode("painted", Painted(Color.RED))
    assert event.data == f'{{"color":{json.dumps(Color.RED.value)}}}'
    assert roundtrip(p, "painted", Painted(Color.RED)).payload == Painted(Color.RED)
    with pytest.raises(SchemaValidationError):
        p.decode(MessageEvent(data='{"color":"nope"}', event="painted"))


class Priced(pydantic.BaseModel):
    price: float
    qty: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> float:
        return self.price * self.qty


class Shown(pydantic.BaseModel):
    user_id: int = pydantic.Field(serialization_alias="userId")


class Named(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    user_id: int = pydantic.Field(alias="uid")


class Lowered(pydantic.BaseModel):
    name: str

    @pydantic.field_validator("name")
    @classmethod
    def lower(cls, value: str) -> str:
        return value.lower()


def test_pydantic_wire_format_keeps_field_names_computed_fields_and_validators() -> None:
    # What a model that reads its field names back sends is unchanged by the alias fallback.
    p = EventProtocol("p", ["1"])
    for name, model in (("priced", Priced), ("shown", Shown), ("named", Named), ("low", Lowered)):
        p.kind(name, model)
    assert json.loads(p.encode("priced", Priced(price=2.5, qty=4)).data) == {
        "price": 2.5,
        "qty": 4,
        "total": 10.0,
    }
    assert p.encode("shown", Shown(user_id=7)).data == '{"user_id":7}'
    assert roundtrip(p, "shown", Shown(user_id=7)).payload == Shown(user_id=7)
    assert p.encode("named", Named(user_id=1)).data == '{"user_id":1}'
    # A value built without validation is validated (and normalised) on the way out.
    assert p.encode("low", Lowered.model_construct(name="ALICE")).data == '{"name":"alice"}'
