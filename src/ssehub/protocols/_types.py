"""Validate typed payloads and convert them to and from JSON values, driven by type hints.

One :class:`TypeAdapter` per payload type does both directions:

* :meth:`TypeAdapter.dump` checks a Python value against the type and returns a JSON-ready value
  (the server side, before encoding);
* :meth:`TypeAdapter.load` checks a decoded JSON value against the type and builds the typed
  object (the client side, after decoding).

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``Literal``, unions and
``Optional``, ``list``/``Sequence``, ``tuple`` (fixed and ``...``), ``dict``/``Mapping`` with
``str`` keys, :class:`enum.Enum`, :class:`datetime.datetime` (ISO 8601 text), :class:`uuid.UUID`,
``Annotated`` (metadata ignored), dataclasses, ``TypedDict``, pydantic models and msgspec Structs.
pydantic and msgspec are never imported here unless a payload type comes from them, so neither is
a dependency of ``ssehub.protocols``.

Unknown keys are refused for dataclasses and TypedDicts: a protocol version is a contract, and a
new field belongs in a new version (see ``docs/protocols.md``).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

__all__ = ["TypeAdapter", "adapter_for"]

_Convert = Callable[[Any, str], Any]


class _Invalid(Exception):
    """Internal: a value does not match; ``path`` locates it inside the payload."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '$'}: {message}")
        self.path = path


def _describe(value: Any) -> str:
    return type(value).__name__


def _comes_from(tp: type, package: str) -> bool:
    """True when a class in ``tp``'s MRO is defined by ``package`` (no import needed)."""
    return any(
        getattr(base, "__module__", "").split(".")[0] == package
        for base in (type(tp), *getattr(tp, "__mro__", ()))
    )


class TypeAdapter:
    """Checks and converts values of one type hint in both directions.

    Args:
        tp: the type hint (a class, or a typing construct such as ``list[int]``).

    Raises:
        TypeError: the type hint is not supported.
    """

    __slots__ = ("_dump", "_load", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self._dump, self._load = _build(tp)

    def dump(self, value: Any) -> Any:
        """Check ``value`` against the type and return it as a JSON-ready value.

        Raises:
            ValueError: the value does not match; the message locates the offending part.
        """
        try:
            return self._dump(value, "")
        except _Invalid as exc:
            raise ValueError(str(exc)) from None

    def load(self, value: Any) -> Any:
        """Check a decoded JSON value against the type and build the typed object.

        Raises:
            ValueError: the value does not match; the message locates the offending part.
        """
        try:
            return self._load(value, "")
        except _Invalid as exc:
            raise ValueError(str(exc)) from None


_CACHE: dict[Any, TypeAdapter] = {}


def adapter_for(tp: Any) -> TypeAdapter:
    """Return the (cached) :class:`TypeAdapter` of ``tp``."""
    try:
        return _CACHE[tp]
    except KeyError:
        adapter = _CACHE[tp] = TypeAdapter(tp)
        return adapter
    except TypeError:  # an unhashable hint: build it every time
        return TypeAdapter(tp)


def _scalar(kinds: tuple[type, ...], name: str) -> tuple[_Convert, _Convert]:
    def check(value: Any, path: str) -> Any:
        original: Any = value  # keep Any: isinstance() below would narrow it to object
        # bool is an int subclass; True is never a valid int or float payload.
        if isinstance(value, bool) and bool not in kinds:
            raise _Invalid(path, f"expected {name}, got bool")
        if not isinstance(value, kinds):
            raise _Invalid(path, f"expected {name}, got {_describe(value)}")
        if name == "float":
            # JSON has no NaN or Infinity: orjson would write null, the stdlib would write an
            # invalid token that browsers' JSON.parse rejects. Refuse them on both sides, and
            # an int too large for a float (math.isfinite() would raise OverflowError).
            try:
                converted = float(original)
            except OverflowError:
                converted = math.inf
            if not math.isfinite(converted):
                # The repr of a huge int is as long as its digits (and past 4300 refused).
                shown = repr(original) if isinstance(original, float) else "a larger int"
                raise _Invalid(path, f"expected a finite float, got {shown}")
            return converted
        return original

    return check, check


def _build(tp: Any) -> tuple[_Convert, _Convert]:
    if tp is Any or tp is object:
        return (lambda v, p: v), (lambda v, p: v)
    if tp is None or tp is type(None):
        return _scalar((type(None),), "null")
    if tp is bool:
        return _scalar((bool,), "bool")
    if tp is int:
        return _scalar((int,), "int")
    if tp is float:
        return _scalar((int, float), "float")
    if tp is str:
        return _scalar((str,), "str")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _build(args[0])
    if origin is Literal:
        return _literal(args)
    if origin is Union or origin is types.UnionType:
        return _union(args)
    if origin in (list, Sequence, typing.Sequence) or tp in (list, Sequence):
        return _list(args[0] if args else Any)
    if origin is tuple or tp is tuple:
        return _tuple(args)
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if args and args[0] is not str:
            raise TypeError(f"JSON object keys are strings: {tp!r} is not supported")
        return _dict(args[1] if args else Any)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _enum(tp)
        if issubclass(tp, datetime.datetime):
            return _datetime()
        if issubclass(tp, uuid.UUID):
            return _uuid()
        if dataclasses.is_dataclass(tp):
            return _dataclass(tp)
        if typing.is_typeddict(tp):
            return _typeddict(tp)
        if _comes_from(tp, "pydantic") and hasattr(tp, "model_validate"):
            return _pydantic(tp)
        if _comes_from(tp, "msgspec"):
            return _msgspec(tp)
    raise TypeError(f"unsupported payload type: {tp!r}")


def _literal(values: tuple[Any, ...]) -> tuple[_Convert, _Convert]:
    # An enum member in a Literal travels as its value, as an enum-typed field does.
    wire = [value.value if isinstance(value, enum.Enum) else value for value in values]

    def dump(value: Any, path: str) -> Any:
        for allowed, sent in zip(values, wire, strict=True):
            if value == allowed and type(value) is type(allowed):
                return sent
        raise _Invalid(path, f"expected one of {list(values)!r}, got {value!r}")

    def load(value: Any, path: str) -> Any:
        for allowed, sent in zip(values, wire, strict=True):
            if value == sent and type(value) is type(sent):
                return allowed
        raise _Invalid(path, f"expected one of {wire!r}, got {value!r}")

    return dump, load


def _union(members: tuple[Any, ...]) -> tuple[_Convert, _Convert]:
    built = [_build(member) for member in members]

    def attempt(index: int) -> _Convert:
        def convert(value: Any, path: str) -> Any:
            errors: list[str] = []
            for pair in built:
                ok, result = _attempt(pair[index], value, path, errors)
                if ok:
                    return result
            raise _Invalid(path, "no union member matches (" + "; ".join(errors) + ")")

        return convert

    return attempt(0), attempt(1)


def _attempt(convert: _Convert, value: Any, path: str, errors: list[str]) -> tuple[bool, Any]:
    try:
        return True, convert(value, path)
    except _Invalid as exc:
        errors.append(str(exc))
        return False, None


def _list(item: Any) -> tuple[_Convert, _Convert]:
    dump_item, load_item = _build(item)

    def make(convert: _Convert, accept: tuple[type, ...]) -> _Convert:
        def run(value: Any, path: str) -> Any:
            items: Any = value  # keep Any: isinstance() below would narrow it to object
            if not isinstance(value, accept) or isinstance(value, (str, bytes)):
                raise _Invalid(path, f"expected a list, got {_describe(value)}")
            return [convert(v, f"{path}[{i}]") for i, v in enumerate(items)]

        return run

    return make(dump_item, (list, tuple)), make(load_item, (list,))


def _tuple(args: tuple[Any, ...]) -> tuple[_Convert, _Convert]:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        dump_list, load_list = _list(args[0] if args else Any)
        return dump_list, (lambda v, p: tuple(load_list(v, p)))
    built = [_build(arg) for arg in args]

    def make(index: int, as_tuple: bool) -> _Convert:
        def run(value: Any, path: str) -> Any:
            if not isinstance(value, (list, tuple)) or len(value) != len(built):
                raise _Invalid(path, f"expected an array of {len(built)} items")
            items = [
                pair[index](v, f"{path}[{i}]")
                for i, (pair, v) in enumerate(zip(built, value, strict=True))
            ]
            return tuple(items) if as_tuple else items

        return run

    return make(0, as_tuple=False), make(1, as_tuple=True)


def _dict(item: Any) -> tuple[_Convert, _Convert]:
    dump_item, load_item = _build(item)

    def make(convert: _Convert) -> _Convert:
        def run(value: Any, path: str) -> Any:
            if not isinstance(value, Mapping):
                raise _Invalid(path, f"expected an object, got {_describe(value)}")
            out: dict[str, Any] = {}
            for key, v in value.items():
                if not isinstance(key, str):
                    raise _Invalid(path, f"object keys must be str, got {_describe(key)}")
                out[key] = convert(v, f"{path}.{key}")
            return out

        return run

    return make(dump_item), make(load_item)


def _enum(tp: type[enum.Enum]) -> tuple[_Convert, _Convert]:
    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            # Accept the raw value too, so TypedDict payloads can carry plain strings.
            try:
                value = tp(value)
            except ValueError:
                raise _Invalid(path, f"expected {tp.__name__}, got {value!r}") from None
        return value.value

    def load(value: Any, path: str) -> Any:
        try:
            return tp(value)
        except ValueError:
            raise _Invalid(path, f"expected {tp.__name__}, got {value!r}") from None

    return dump, load


def _datetime() -> tuple[_Convert, _Convert]:
    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, datetime.datetime):
            raise _Invalid(path, f"expected datetime, got {_describe(value)}")
        return value.isoformat()

    def load(value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise _Invalid(path, f"expected an ISO 8601 string, got {_describe(value)}")
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid(path, f"not an ISO 8601 datetime: {value!r}") from None

    return dump, load


def _uuid() -> tuple[_Convert, _Convert]:
    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, uuid.UUID):
            raise _Invalid(path, f"expected UUID, got {_describe(value)}")
        return str(value)

    def load(value: Any, path: str) -> Any:
        try:
            return uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise _Invalid(path, f"not a UUID: {value!r}") from None

    return dump, load


def _fields(tp: type, names: Sequence[str]) -> dict[str, tuple[_Convert, _Convert]]:
    hints = typing.get_type_hints(tp, include_extras=True)
    return {name: _build(hints[name]) for name in names}


def _dataclass(tp: type) -> tuple[_Convert, _Convert]:
    fields = [f for f in dataclasses.fields(tp) if f.init]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    # Built on first use: a dataclass may refer to itself or to classes defined after it.
    cache: dict[str, tuple[_Convert, _Convert]] = {}

    def converters() -> dict[str, tuple[_Convert, _Convert]]:
        if not cache:
            cache.update(_fields(tp, [f.name for f in fields]))
        return cache

    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise _Invalid(path, f"expected {tp.__name__}, got {_describe(value)}")
        return {
            name: pair[0](getattr(value, name), f"{path}.{name}")
            for name, pair in converters().items()
        }

    def load(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _Invalid(path, f"expected an object for {tp.__name__}, got {_describe(value)}")
        _check_keys(value, converters().keys(), required, path)
        kwargs = {k: converters()[k][1](v, f"{path}.{k}") for k, v in value.items()}
        return tp(**kwargs)

    return dump, load


def _check_keys(value: Mapping[str, Any], known: Any, required: set[str], path: str) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise _Invalid(path, f"unknown keys {unknown}")
    missing = sorted(required - set(value))
    if missing:
        raise _Invalid(path, f"missing keys {missing}")


def _typeddict(tp: type) -> tuple[_Convert, _Convert]:
    required: set[str] = set(getattr(tp, "__required_keys__", set()))
    cache: dict[str, tuple[_Convert, _Convert]] = {}

    def converters() -> dict[str, tuple[_Convert, _Convert]]:
        if not cache:
            cache.update(_fields(tp, list(typing.get_type_hints(tp))))
        return cache

    def make(index: int) -> _Convert:
        def run(value: Any, path: str) -> Any:
            if not isinstance(value, Mapping):
                raise _Invalid(path, f"expected an object for {tp.__name__}")
            _check_keys(value, converters().keys(), required, path)
            return {k: converters()[k][index](v, f"{path}.{k}") for k, v in value.items()}

        return run

    return make(0), make(1)


def _pydantic(tp: Any) -> tuple[_Convert, _Convert]:
    import pydantic
    from pydantic_core import PydanticSerializationError

    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise _Invalid(path, f"expected {tp.__name__}, got {_describe(value)}")
        # Re-validated, since model_construct() and attribute assignment can bypass
        # validation (and validators may normalise). By field name first, as before (the wire
        # format of a model that reads its field names back stays the same); by alias when
        # only that validates (a model with an alias it reads by). Round-trip mode leaves the
        # computed fields out of that check.
        errors: list[Exception] = []
        for by_alias in (False, True):
            try:
                validated = tp.model_validate(value.model_dump(by_alias=by_alias, round_trip=True))
                break
            except (pydantic.ValidationError, PydanticSerializationError) as exc:
                errors.append(exc)
        else:
            raise _Invalid(path, _one_line(errors[0])) from None
        # Computed fields are sent (clients read them), unless the model refuses extra keys:
        # then it could not read its own event back.
        forbids = tp.model_config.get("extra") == "forbid"
        try:
            return validated.model_dump(mode="json", by_alias=by_alias, round_trip=forbids)
        except PydanticSerializationError as exc:
            raise _Invalid(path, _one_line(exc)) from None

    def load(value: Any, path: str) -> Any:
        try:
            return tp.model_validate(value)
        except pydantic.ValidationError as exc:
            raise _Invalid(path, _one_line(exc)) from None

    return dump, load


def _msgspec(tp: Any) -> tuple[_Convert, _Convert]:
    import msgspec

    def dump(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise _Invalid(path, f"expected {tp.__name__}, got {_describe(value)}")
        try:
            builtins = msgspec.to_builtins(value)
            # Structs do not validate on construction; a round trip through convert() does.
            msgspec.convert(builtins, tp)
        except (msgspec.ValidationError, TypeError) as exc:
            raise _Invalid(path, _one_line(exc)) from None
        return builtins

    def load(value: Any, path: str) -> Any:
        try:
            return msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            raise _Invalid(path, _one_line(exc)) from None

    return dump, load


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
