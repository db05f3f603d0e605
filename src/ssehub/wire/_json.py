"""Compact UTF-8 JSON for event data, with ``orjson`` when it is installed.

``orjson`` is the only import here outside the standard library, and it is optional: the module
falls back to :mod:`json` with the same compact output. Both paths accept and refuse the same
values, so installing ``orjson`` only changes the speed:

* accepted: ``dict`` (keys ``str``, ``int``, ``float``, ``bool`` or ``None``, written as strings
  as :mod:`json` does), ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool``, ``None``,
  their subclasses (``IntEnum``, ``OrderedDict``, named tuples...), and two types ``orjson``
  writes natively that are unambiguous: an ``Enum`` member (as its value) and a ``UUID`` (as its
  canonical string);
* refused with ``TypeError``: everything else, including dataclasses, ``datetime``/``date``/
  ``time`` (no single JSON form; ``orjson`` would pick one) and ``Decimal``, and as dict keys
  anything but the key types above; refused with ``ValueError``: NaN and infinities, which are
  not JSON (browsers' ``JSON.parse`` rejects them).

Convert other values yourself (``dataclasses.asdict``, ``datetime.isoformat``...), or use the
protocol codecs of :mod:`ssehub.protocols`.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["dumps"]


def _default(value: Any) -> Any:
    # Called by both encoders for a value they do not know. Enum members and UUIDs are what
    # orjson writes natively (no option turns that off), so the stdlib writes them the same way;
    # anything else is refused by both.
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _stdlib_dumps(value: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON and browsers' JSON.parse rejects them.
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
    )


def _load_orjson() -> Callable[[Any], str] | None:
    try:
        import orjson
    except ImportError:
        return None

    def _orjson_dumps(
        value: Any,
        _dumps: Callable[..., bytes] = orjson.dumps,
        # Dataclasses and datetimes go to _default (which refuses them) instead of being
        # written in orjson's own format, which the stdlib path has no equivalent for.
        _options: int = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME,
        _error: type[Exception] = orjson.JSONEncodeError,
    ) -> str:
        # The defaults bind orjson's names once: this runs for every JSON event.
        try:
            # Positional (default, option): keyword arguments cost measurably more per call.
            text = _dumps(value, _default, _options).decode()
        except _error:
            # Whatever orjson refuses (non-str keys, ints beyond 64 bits, tuple and float
            # subclasses, and the types _default refuses), the stdlib decides: it accepts the
            # first ones and raises the same TypeError or ValueError as without orjson.
            return _stdlib_dumps(value)
        # (A str test: `in` on bytes is several times slower than on str.)
        if "null" in text:
            # orjson writes NaN and Infinity as null, silently changing the data; the stdlib
            # refuses them (ValueError), as this module promises. Only output containing
            # "null" pays for the second pass.
            return _stdlib_dumps(value)
        return text

    return _orjson_dumps


dumps: Callable[[Any], str] = _load_orjson() or _stdlib_dumps
"""Serialise ``value`` as compact JSON text (no spaces, UTF-8 characters kept as is).

Raises ``TypeError`` for a value that is not JSON-serialisable and ``ValueError`` for NaN or
an infinity, with or without ``orjson`` (see the module docstring for the exact rules)."""
