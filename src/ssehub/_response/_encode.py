"""Turning the items a content iterator yields into SSE wire bytes.

The rules are sse-starlette's where they are safe, plus structured data as compact JSON (as
FastAPI's own SSE does), and an error instead of a Python ``repr`` for anything else; the full
table is in docs/response.md, "What you can stream". The response re-raises the errors from its
ASGI call, so they reach the server's error log instead of ending the stream quietly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from .._exceptions import EventValidationError
from ..wire import ServerSentEvent
from ..wire._json import dumps

__all__ = ["DICT_KEYS", "make_encoder"]

DICT_KEYS: Final = frozenset({"data", "event", "id", "retry", "comment"})
"""The keys a ``dict`` item may have (sse-starlette's ``ServerSentEvent`` keyword arguments)."""

_TEXT_TYPES: Final = frozenset({str, int, float})  # data sent as its text: no JSON check needed


def _plain(value: Any) -> Any:
    """``value`` with dataclasses, models and Structs (at any depth) turned into JSON values.

    Anything else comes back as the very same object, which is how :func:`_json_text` tells it
    is not data: a class (a dataclass or model class passes the checks below, but yielding one
    instead of an instance is a bug to report), and what ``dumps`` does not take (a ``set``, a
    ``datetime`` in a plain container), for ``dumps`` to refuse with its own message.
    """
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, type):
        return value
    cls = type(value)
    # Duck-typed, so neither pydantic nor msgspec is imported to find out.
    if callable(getattr(cls, "model_dump_json", None)):
        # A pydantic model: its own JSON mode (datetimes, serialisers, computed fields...).
        return value.model_dump(mode="json")
    if callable(getattr(cls, "model_dump", None)):
        return _plain(value.model_dump())
    if hasattr(cls, "__struct_fields__"):
        import msgspec  # only reached when a Struct exists, so msgspec is installed

        return msgspec.to_builtins(value)
    if hasattr(cls, "__dataclass_fields__"):
        # Not dataclasses.asdict: it deep-copies every value, and stops at nested models.
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _json_text(value: Any) -> str | None:
    """``value`` as compact JSON text if it is data sent as JSON (a list, tuple, dict, dataclass,
    pydantic model or msgspec Struct), else ``None``; :class:`EventValidationError` when it is
    data with no JSON form."""
    try:
        if callable(getattr(type(value), "model_dump_json", None)):
            text = value.model_dump_json()
            if isinstance(text, str):
                return text
        elif isinstance(value, (dict, list, tuple)):
            try:
                return dumps(value)  # plain JSON values: one pass, no copy
            except TypeError:
                pass  # a dataclass, model or Struct inside: convert them, then decide again
        plain = _plain(value)
        return None if plain is value else dumps(plain)
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError includes pydantic's serialisation errors and NaN; RecursionError a
        # container that holds itself.
        raise EventValidationError(
            "data",
            f"{type(value).__name__} has no JSON form: {exc or type(exc).__name__}; convert "
            "it to JSON values first (str, numbers, bool, None, dict, list)",
        ) from exc


def _from_dict(item: dict[Any, Any], sep: str) -> bytes:
    # Build new keyword arguments: the caller's dict is never mutated. A "sep" key is ignored
    # (sse-starlette overrides it with the response's separator too).
    unknown = [key for key in item if key not in DICT_KEYS and key != "sep"]
    if unknown:
        raise TypeError(
            f"unknown SSE field(s) in dict item: {sorted(map(str, unknown))}; "
            f"allowed: {sorted(DICT_KEYS)}"
        )
    fields = {key: value for key, value in item.items() if key != "sep"}
    data = fields.pop("data", None)
    if data is not None and type(data) not in _TEXT_TYPES:
        json = _json_text(data)
        data = data if json is None else json
    return ServerSentEvent(data, sep=sep, **fields).encode()


def make_encoder(sep: str) -> Callable[[Any], bytes]:
    """Return a function that encodes one content item with the line separator ``sep``.

    Args:
        sep: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``.

    Returns:
        ``encode(item) -> bytes``. It raises :class:`~ssehub.EventValidationError` for an item
        that would break the wire format, data with no JSON form, or an item that is not one
        of the kinds above (its message names the item's type and the accepted kinds), and
        ``TypeError`` for a ``dict`` with unknown keys.
    """
    tail = sep + sep

    def encode(item: Any) -> bytes:
        kind = type(item)
        # Plain one-line text is the hot path (token streams, benchmarks): skip the event object.
        if kind is str:
            if "\n" in item or "\r" in item:
                return ServerSentEvent(item, sep=sep).encode()
            text: str = "data: " + item + tail
            try:
                return text.encode()
            except UnicodeEncodeError:
                # A lone surrogate: the event constructor raises the typed error for it.
                return ServerSentEvent(item, sep=sep).encode()
        if kind is bytes:
            raw: bytes = item
            return raw
        if isinstance(item, ServerSentEvent):
            return item.encode()
        if isinstance(item, dict):
            return _from_dict(item, sep)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return bytes(item)
        if isinstance(item, str):
            # A str subclass (a StrEnum member): its text, never its str()/name.
            return encode(str.__str__(item))
        if kind is not int and not isinstance(item, float):
            # Duck-typed events (for example sse-starlette's own ServerSentEvent objects mixed in
            # during a migration) carry their own encoding. A class is skipped: its encode is an
            # unbound function (yielding a class, not an instance, is a bug to report, not to call).
            method = None if isinstance(item, type) else getattr(item, "encode", None)
            if callable(method):
                encoded = method()
                if isinstance(encoded, bytes):
                    return encoded
            # A model, dataclass, Struct, list or tuple yielded as it is: its JSON is the
            # event's data, as in FastAPI's SSE.
            if (json := _json_text(item)) is not None:
                return ServerSentEvent(json, sep=sep).encode()
            if not isinstance(item, int) or isinstance(item, bool):
                # sse-starlette sends str(item), which for anything but text and numbers is a
                # Python repr ("<object object at 0x...>", "Colour.RED", "{1, 2}"): refuse it.
                raise EventValidationError(
                    "data",
                    f"content item of type {kind.__name__} has no SSE form; yield a "
                    "ServerSentEvent, a dict of event fields, str, bytes, int or float, or data "
                    "to send as JSON (a list, tuple, dataclass, pydantic model or msgspec "
                    "Struct; JSONServerSentEvent for any other JSON value)",
                )
        # int and float (subclasses included) become data text, as in sse-starlette.
        return ServerSentEvent(item, sep=sep).encode()

    return encode
