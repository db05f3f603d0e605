"""How the Redis backend writes events into stream entries and reads them back; its ids.

Pure functions, no I/O. An entry holds plain fields, never pickle (see
:mod:`ssehub.backends._redis_scripts` for the key layout): ``t`` (the topics as a JSON array),
``d`` (data), ``e`` (event type), ``r`` (retry, decimal), ``c`` (comment), ``s`` (line
separator), ``v`` (``"1"`` for a private event) and ``i`` (an id the publisher chose, sent as
the ``id:`` field instead of the entry's) when set, and in the log only ``p`` (the
epoch). Event ids are ``<epoch>-<ms>-<seq>``; the stream id part, ``<ms>-<seq>``, is the
position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..broker.events import Position, StoredEvent
from ..wire import ServerSentEvent

__all__ = ["decode_entry", "encode_fields", "parse_event_id", "stream_position", "text"]

_EVENT_ID_RE: Final = re.compile(r"([0-9a-f]{8})-(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")
_STREAM_ID_RE: Final = re.compile(r"(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")
_MAX_U64: Final = 2**64 - 1


def parse_event_id(value: str) -> tuple[str, Position] | None:
    """Split an event id of this backend, ``<epoch>-<ms>-<seq>``, into epoch and position.

    Only the canonical form is accepted (8 lowercase hex digits, then decimal numbers without
    leading zeros, each at most 2**64 - 1), so an id has exactly one spelling.

    Args:
        value: a candidate id, e.g. a ``Last-Event-ID``.

    Returns:
        ``(epoch, (ms, seq))``, or ``None`` when ``value`` is not such an id.
    """
    match = _EVENT_ID_RE.fullmatch(value)
    if match is None:
        return None
    ms, seq = int(match[2]), int(match[3])
    if ms > _MAX_U64 or seq > _MAX_U64:
        return None
    return match[1], (ms, seq)


def text(value: bytes | str) -> str:
    """Return ``value`` as text (redis-py answers bytes unless told otherwise).

    Args:
        value: a reply element.

    Returns:
        The UTF-8 decoded text.
    """
    return value.decode() if isinstance(value, bytes) else value


def stream_position(value: bytes | str) -> Position:
    """Return the position of a stream id that Redis wrote (``<ms>-<seq>``).

    Args:
        value: the stream id.

    Returns:
        ``(ms, seq)``.

    Raises:
        ValueError: ``value`` is not a stream id.
    """
    match = _STREAM_ID_RE.fullmatch(text(value))
    if match is None:
        raise ValueError(f"not a stream id: {value!r}")
    return (int(match[1]), int(match[2]))


def encode_fields(topics: Sequence[str], event: ServerSentEvent, private: bool) -> list[str]:
    """Return the entry fields of an event, flat: ``[name, value, name, value, ...]``.

    Args:
        topics: the event's topics.
        event: the event; an id it has is a publisher-chosen one (field ``i``).
        private: whether the event is private.

    Returns:
        The field names and values, only those that are set.
    """
    fields = ["t", json.dumps(list(topics), separators=(",", ":"))]
    if private:
        fields += ["v", "1"]  # v: visibility; absent means public (entries written before it)
    if event.data is not None:
        fields += ["d", event.data]
    if event.event is not None:
        fields += ["e", event.event]
    if event.retry is not None:
        fields += ["r", str(event.retry)]
    if event.comment is not None:
        fields += ["c", event.comment]
    if event.sep != "\n":
        fields += ["s", event.sep]
    if event.id is not None:
        fields += ["i", event.id]  # a publisher-chosen id (ssehub.broker.chosen_ids)
    return fields


def decode_entry(
    raw_id: bytes | str,
    raw: Any,
    epoch: str | None,
    timestamp: Callable[[Position], float],
) -> StoredEvent:
    """Rebuild a stored event from a stream entry.

    Args:
        raw_id: the entry id.
        raw: the fields, a dict (from ``XREAD``) or a flat list (from a Lua script).
        epoch: the epoch of topic entries; log entries carry their own in field ``p``.
        timestamp: gives the broker-clock time at which an entry of a position was stored.

    Returns:
        The event with its id set.

    Raises:
        KeyError: the entry has no topics (it was not written by this backend).
        ValueError: a field is malformed (same cause).
    """
    position = stream_position(raw_id)
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    fields = {text(k): text(v) for k, v in pairs}
    event_id = f"{fields.get('p', epoch)}-{position[0]}-{position[1]}"
    retry = fields.get("r")
    event = ServerSentEvent(
        fields.get("d"),
        event=fields.get("e"),
        id=fields.get("i", event_id),
        retry=None if retry is None else int(retry),
        comment=fields.get("c"),
        sep=fields.get("s"),
    )
    topics = tuple(json.loads(fields["t"]))
    private = fields.get("v") == "1"
    return StoredEvent(event_id, topics, event, timestamp(position), position, private)
