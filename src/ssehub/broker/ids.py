"""Event ids and ``Last-Event-ID`` values: the character set, the length bound, validation.

Ids are assigned by the backend, never by publishers. They are short ASCII made of letters,
digits and ``-``, ``_``, ``.``, ``:`` only, so a browser can send one back in a ``Last-Event-ID``
header (or a ``lastEventId`` query parameter) without a CORS preflight and without escaping.

A ``Last-Event-ID`` comes from the network, so it is untrusted: it is checked against the same
character set and length before anything parses it, and it is never echoed back (not in an
exception message, not in the stream). WHATWG HTML §9.2.4 says the browser sends back whatever
the last ``id:`` field held (https://html.spec.whatwg.org/multipage/server-sent-events.html).
"""

from __future__ import annotations

import re
import secrets
from typing import Final

from .._exceptions import InvalidLastEventId

__all__ = [
    "ID_ALPHABET",
    "MAX_ID_LENGTH",
    "is_valid_event_id",
    "new_epoch",
    "validate_last_event_id",
]

MAX_ID_LENGTH: Final = 64
"""Bytes. Room for ``<epoch>-<sequence>`` and Redis stream ids; short, so lookups stay cheap."""

ID_ALPHABET: Final = "A-Z a-z 0-9 - _ . :"
"""The characters an event id may contain (documentation form of :data:`_ID_RE`)."""

_ID_RE: Final = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_ID_LENGTH}}}")


def is_valid_event_id(value: object) -> bool:
    """Return whether ``value`` is a well-formed id: 1-64 characters from :data:`ID_ALPHABET`.

    Args:
        value: any object; only a ``str`` can be valid.

    Returns:
        ``True`` when the value could be an id this package issued.
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def validate_last_event_id(value: str | None) -> str | None:
    """Check a client's ``Last-Event-ID`` for APIs that prefer to answer 400 to a bad one.

    :meth:`ssehub.Broker.subscribe` does not need this: it treats a malformed value as a reset
    (``ResetReason.MALFORMED``) and continues live, as browsers cannot be told to fix their header.

    Args:
        value: the header or query value; ``None`` or ``""`` mean "no id" (a browser whose last
            ``id:`` field was empty sends no header at all).

    Returns:
        The value unchanged, or ``None`` when it was ``None`` or empty.

    Raises:
        InvalidLastEventId: too long or characters outside :data:`ID_ALPHABET`. The message
            never contains the value.
    """
    if value is None or value == "":
        return None
    if not is_valid_event_id(value):
        raise InvalidLastEventId(
            f"Last-Event-ID must be 1-{MAX_ID_LENGTH} characters from [{ID_ALPHABET}]"
        )
    return value


def new_epoch() -> str:
    """Return a fresh random epoch token (8 lowercase hex digits) for one backend lifetime.

    Ids carry the epoch of the backend that issued them, so an id from an earlier process (or
    another in-memory broker) is recognised as unknown instead of being compared to unrelated
    sequence numbers.
    """
    return secrets.token_hex(4)
