"""Turning the items a content iterator yields into SSE wire bytes.

The rules follow sse-starlette's ``ensure_bytes`` where they are safe, so code written for it
keeps its output: ``bytes`` go out as they are, a :class:`~ssehub.wire.ServerSentEvent` uses its
own (cached) encoding, a ``dict`` is read as the keyword arguments of an event and encoded with the
response's separator, ``str``, ``int`` and ``float`` become the event's ``data`` text, and objects
with an ``encode()`` method returning bytes (sse-starlette's events) are sent as they encode
themselves. Unlike sse-starlette, which sends ``str(item)`` for anything else, every other item
(containers, ``bool``, plain ``Enum`` members, arbitrary objects) is refused with
:class:`~ssehub.EventValidationError` instead of being sent as a Python ``repr`` (use
:class:`~ssehub.JSONServerSentEvent` for JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .._exceptions import EventValidationError
from ..wire import ServerSentEvent

__all__ = ["DICT_KEYS", "make_encoder"]

DICT_KEYS: Final = frozenset({"data", "event", "id", "retry", "comment"})
"""The keys a ``dict`` item may have (sse-starlette's ``ServerSentEvent`` keyword arguments)."""


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
    return ServerSentEvent(data, sep=sep, **fields).encode()


def _unsupported(item: object) -> str:
    return (
        f"content item of type {type(item).__name__} has no SSE form; yield a ServerSentEvent, "
        "a dict of event fields, str, bytes, int or float (use JSONServerSentEvent for "
        "structured data)"
    )


def make_encoder(sep: str) -> Callable[[Any], bytes]:
    """Return a function that encodes one content item with the line separator ``sep``.

    Args:
        sep: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``.

    Returns:
        ``encode(item) -> bytes``. It raises :class:`~ssehub.EventValidationError` for an item
        that would break the wire format or is not one of the kinds above (its message names
        the item's type and the accepted kinds), and ``TypeError`` for a ``dict`` with unknown
        keys.
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
            # during a migration) carry their own encoding.
            # A class is skipped: its encode is an unbound function (yielding
            # ServerSentEvent instead of an instance is a bug to report, not to call).
            method = None if isinstance(item, type) else getattr(item, "encode", None)
            if callable(method):
                encoded = method()
                if isinstance(encoded, bytes):
                    return encoded
            if not isinstance(item, int) or isinstance(item, bool):
                # sse-starlette sends str(item), which for anything but text and numbers is a
                # Python repr ("<object object at 0x...>", "Colour.RED", "{'a': 1}"): refuse it.
                raise EventValidationError("data", _unsupported(item))
        # int and float (subclasses included) become data text, as in sse-starlette.
        return ServerSentEvent(item, sep=sep).encode()

    return encode
