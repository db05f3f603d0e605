"""Compact UTF-8 JSON for event data, with ``orjson`` when it is installed.

``orjson`` is the only import here outside the standard library, and it is optional: the module
falls back to :mod:`json` with the same compact output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps"]


def _stdlib_dumps(value: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON and browsers' JSON.parse rejects them.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _load_orjson() -> Callable[[Any], str] | None:
    try:
        import orjson
    except ImportError:
        return None

    def _orjson_dumps(
        value: Any,
        _dumps: Callable[..., bytes] = orjson.dumps,
        _non_str_keys: int = orjson.OPT_NON_STR_KEYS,
        _error: type[Exception] = orjson.JSONEncodeError,
    ) -> str:
        # The defaults bind orjson's names once: this runs for every JSON event.
        try:
            text = _dumps(value).decode()
        except _error:
            try:
                # Keys that are not str (the option costs time, so only when needed): int
                # keys become strings, as with the stdlib.
                text = _dumps(value, option=_non_str_keys).decode()
            except _error:
                # Types orjson does not know but json might (e.g. int subclasses beyond
                # 64 bits): fall back rather than fail; both write compact, standard JSON.
                return _stdlib_dumps(value)
        # (A str test: `in` on bytes is several times slower than on str.)
        if "null" in text:
            # orjson writes NaN and Infinity as null, silently changing the data; the stdlib
            # refuses them (ValueError), as this module promises. Only output containing
            # "null" pays for the second pass.
            try:
                return _stdlib_dumps(value)
            except TypeError:
                pass  # a type only orjson serialises (dataclass, datetime...): keep its text
        return text

    return _orjson_dumps


dumps: Callable[[Any], str] = _load_orjson() or _stdlib_dumps
"""Serialise ``value`` as compact JSON text (no spaces, UTF-8 characters kept as is).

Raises ``TypeError`` for a value that is not JSON-serialisable and ``ValueError`` for NaN or
an infinity (not JSON; browsers' ``JSON.parse`` rejects them), with or without ``orjson``."""
