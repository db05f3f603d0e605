"""How the hub's options are read from text: one parser per kind of value, and the field helper.

Command-line flags and ``SSEHUB_<NAME>`` variables are both text. Each parser turns that text
into the field's value or raises ``ValueError`` with a short message, which
:meth:`ssehub.hub.HubSettings.from_sources` prefixes with the flag or variable it came from.
Range checks are not here: they run on every construction (:mod:`ssehub.hub._settings_checks`),
so settings built in Python are checked too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from typing import Any, Final

__all__ = [
    "LOG_LEVELS",
    "SLOW_POLICIES",
    "option",
    "parse_bool",
    "parse_choice",
    "parse_float",
    "parse_int",
    "parse_list",
    "parse_octal",
    "parse_optional_port",
    "parse_optional_seconds",
    "parse_optional_text",
    "parse_upper_choice",
]

SLOW_POLICIES: Final = ("disconnect", "drop_oldest", "block")
"""The values of ``slow_policy``."""

LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
"""The values of ``log_level`` (uvicorn's names)."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_NONE: Final = frozenset({"", "none", "off"})


def parse_int(text: str) -> int:
    """Parse an integer; ``_`` may group digits (``10_000``)."""
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError("expected an integer") from None


def parse_float(text: str) -> float:
    """Parse a finite number of seconds."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    return value


def parse_optional_seconds(text: str) -> float | None:
    """Parse seconds (or a rate); ``0``, ``none``, ``off`` or nothing is ``None`` (disabled)."""
    # "0", "none" and "off" all mean "disabled": the natural spellings in a shell or a YAML file.
    if text.strip().lower() in _NONE:
        return None
    value = parse_float(text)
    return None if value == 0 else value


def parse_bool(text: str) -> bool:
    """Parse ``1/0``, ``true/false``, ``yes/no`` or ``on/off``, in any case."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def parse_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    """Return a parser of one of ``choices``, case-insensitive, ``-`` read as ``_``."""

    def parse(text: str) -> str:
        value = text.strip().lower().replace("-", "_")
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return parse


def parse_upper_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    """Return a parser of one of ``choices`` (upper case, such as JWT algorithms), any case."""

    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return parse


def parse_optional_text(text: str) -> str | None:
    """Parse a path, key or name; nothing, ``none`` or ``off`` is ``None``.

    So a value set in the environment can be unset on the command line.
    """
    stripped = text.strip()
    return None if stripped.lower() in _NONE else stripped


def parse_octal(text: str) -> int:
    """Parse a file mode in octal, as ``chmod`` takes it (``600`` or ``0o600``)."""
    try:
        return int(text.strip().removeprefix("0o"), 8)
    except ValueError:
        raise ValueError("expected an octal file mode such as 600") from None


def parse_optional_port(text: str) -> int | None:
    """Parse a port number; nothing, ``none`` or ``off`` is ``None`` (the listener is off)."""
    if text.strip().lower() in _NONE:
        return None
    return parse_int(text)


def parse_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list; blank items are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def option(default: object, help: str, parse: Callable[[str], Any], metavar: str) -> Any:
    """Declare a settings field: its default, help text, text parser and ``--help`` placeholder.

    Args:
        default: the field's default.
        help: one line for ``--help`` and the docs, with the reason for the default.
        parse: text -> value; raises ``ValueError`` with a short message.
        metavar: the placeholder shown in ``--help``.

    Returns:
        A dataclass field carrying the rest in its metadata (see
        :func:`ssehub.hub._settings.options`).
    """
    return field(default=default, metadata={"help": help, "parse": parse, "metavar": metavar})
