"""``POST /publish`` bodies: JSON bytes in, validated :class:`PublishRequest` values out.

Pure functions (no I/O, no broker), so every rule is unit-tested directly. The body is either one
object or an array of objects (a batch). A batch is validated entirely before anything is
published, so a bad item rejects the whole batch and nothing of it reaches subscribers.

One object::

    {"topic": "orders", "data": "text or any JSON value", "event": "created", "retry": 3000}

``topics`` (a list) may replace ``topic``. A ``str`` ``data`` is delivered verbatim (it may span
several lines: the encoder writes one ``data:`` line per line, WHATWG HTML §9.2.5); any other
JSON value is delivered as compact JSON text. Ids are assigned by the broker, so ``id`` is
refused, as is every other unknown field (a typo such as ``evnet`` must not be silently dropped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from .._exceptions import InvalidTopic
from ..broker.events import RESERVED_EVENT_PREFIX
from ..broker.topics import validate_topic
from ..wire._json import dumps
from ._errors import HubHTTPError

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_RETRY",
    "PublishRequest",
    "check_content_type",
    "check_topics",
    "parse_publish_body",
]

MAX_EVENT_TYPE_LENGTH: Final = 256
"""Characters in an ``event`` type: far above any real type name, small enough to bound frames."""

MAX_RETRY: Final = 2**31 - 1
"""Largest ``retry`` in milliseconds (~24.8 days): the largest delay browsers' timers accept."""

_FIELDS: Final = frozenset({"topic", "topics", "data", "event", "retry"})


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One validated event to publish.

    Attributes:
        topics: the distinct topics, in the order given.
        data: the text to deliver (a JSON ``data`` that was not a string, as compact JSON).
        event: the event type, or ``None`` for the default ``message``.
        retry: the client reconnection delay in milliseconds to send with it, or ``None``.
    """

    topics: tuple[str, ...]
    data: str
    event: str | None = None
    retry: int | None = None


def check_content_type(value: str | None) -> None:
    """Accept ``application/json`` and ``application/*+json``; refuse everything else.

    Requiring a JSON media type also means a cross-origin browser page cannot publish with a
    "simple" request (form or ``text/plain``): it needs a CORS preflight, which the hub does not
    grant.

    Args:
        value: the request's ``Content-Type`` header, or ``None``.

    Raises:
        HubHTTPError: ``unsupported_media_type`` (415).
    """
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise HubHTTPError(
        "unsupported_media_type",
        "the body must be JSON, sent with Content-Type: application/json",
    )


def check_topics(topics: Iterable[object], *, max_topics: int, where: str = "") -> tuple[str, ...]:
    """Validate topics and return them distinct, in first-seen order.

    Args:
        topics: candidate topics (anything: they come from JSON or a query string).
        max_topics: the most distinct topics allowed.
        where: a prefix for error details (``"events[2]: "`` inside a batch).

    Returns:
        A non-empty tuple of valid, distinct topics.

    Raises:
        HubHTTPError: ``missing_topic``, ``invalid_topic`` or ``too_many_topics`` (all 400).
    """
    seen: dict[str, None] = {}
    for topic in topics:
        try:
            seen[validate_topic(topic)] = None
        except InvalidTopic as exc:
            raise HubHTTPError("invalid_topic", f"{where}invalid topic: {exc.reason}") from None
        if len(seen) > max_topics:
            raise HubHTTPError(
                "too_many_topics", f"{where}too many topics (at most {max_topics} per request)"
            )
    if not seen:
        raise HubHTTPError("missing_topic", f"{where}at least one topic is required")
    return tuple(seen)


def _reject(code: str, detail: str) -> NoReturn:
    raise HubHTTPError(code, detail)


def _load_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _reject("invalid_json", "the body is not valid UTF-8")
    try:
        # The standard library, not orjson: orjson turns integers beyond 64 bits into floats,
        # which would silently change the data that subscribers receive.
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        _reject("invalid_json", "the JSON is nested too deeply")
    except ValueError as exc:
        # JSONDecodeError, NaN/Infinity (refused below) and integers over Python's digit limit.
        _reject("invalid_json", f"the body is not valid JSON: {str(exc)[:200]}")


def _refuse_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259 §6); browsers' JSON.parse would reject the data.
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 would become Infinity, which is not JSON either
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def _parse_data(item: dict[str, Any], where: str) -> str:
    if "data" not in item:
        _reject("missing_data", f"{where}'data' is required (a string or any JSON value)")
    value = item["data"]
    if isinstance(value, str):
        text = value
    else:
        try:
            text = dumps(value)
        except (TypeError, ValueError, RecursionError):
            _reject("invalid_data", f"{where}'data' cannot be written as compact JSON")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON escapes can spell a lone surrogate ("\ud800"), which no UTF-8 stream can carry.
        _reject("invalid_data", f"{where}'data' contains a lone surrogate (not valid Unicode)")
    return text


def check_not_reserved(value: str, what: str, *, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse a type in the hub's reserved ``ssehub.`` namespace (resets, drops, end of stream).

    Args:
        value: the event or message type.
        what: how the error names it (``"event types"``, ``"message types"``).
        allowed: reserved types the caller may send anyway (a channel's end-of-stream type).

    Raises:
        HubHTTPError: ``reserved_event`` (403): well-formed, but not the sender's to use.
    """
    if value.startswith(RESERVED_EVENT_PREFIX) and value not in allowed:
        _reject(
            "reserved_event",
            f"{what} starting with {RESERVED_EVENT_PREFIX!r} are reserved for the hub",
        )


def _parse_event(item: dict[str, Any], where: str) -> str | None:
    value = item.get("event")
    if value is None:
        return None
    if not isinstance(value, str):
        _reject("invalid_event", f"{where}'event' must be a string")
    if not value:
        _reject("invalid_event", f"{where}'event' must not be empty (omit it for 'message')")
    if len(value) > MAX_EVENT_TYPE_LENGTH:
        _reject(
            "invalid_event", f"{where}'event' is longer than {MAX_EVENT_TYPE_LENGTH} characters"
        )
    # CR and LF end a field line for every conformant parser (WHATWG HTML §9.2.6), so they
    # would let a publisher inject fields; NUL is refused so types stay printable text.
    if "\r" in value or "\n" in value or "\0" in value:
        _reject("invalid_event", f"{where}'event' must not contain CR, LF or NUL")
    check_not_reserved(value, f"{where}event types")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _reject("invalid_event", f"{where}'event' contains a lone surrogate (not valid Unicode)")
    return value


def _parse_retry(item: dict[str, Any], where: str) -> int | None:
    value = item.get("retry")
    if value is None:
        return None
    # bool is an int subclass: `true` must not become `retry: 1`.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRY:
        _reject(
            "invalid_retry",
            f"{where}'retry' must be an integer number of milliseconds, 0-{MAX_RETRY}",
        )
    return value


def _parse_item(item: object, *, max_topics: int, where: str) -> PublishRequest:
    if not isinstance(item, dict):
        _reject("invalid_body", f"{where}each event must be a JSON object")
    unknown = item.keys() - _FIELDS
    if unknown:
        name = min(unknown)
        if name == "id":
            _reject("unknown_field", f"{where}'id' cannot be set: the hub assigns event ids")
        _reject(
            "unknown_field",
            f"{where}unknown field {name[:64]!r}; allowed: data, event, retry, topic, topics",
        )
    if "topic" in item and "topics" in item:
        _reject("invalid_topic", f"{where}give either 'topic' or 'topics', not both")
    if "topics" in item:
        raw = item["topics"]
        if not isinstance(raw, list):
            _reject("invalid_topic", f"{where}'topics' must be a list of strings")
        topics = check_topics(raw, max_topics=max_topics, where=where)
    elif "topic" in item:
        topics = check_topics((item["topic"],), max_topics=max_topics, where=where)
    else:
        _reject("missing_topic", f"{where}'topic' (or 'topics') is required")
    return PublishRequest(
        topics=topics,
        data=_parse_data(item, where),
        event=_parse_event(item, where),
        retry=_parse_retry(item, where),
    )


def parse_publish_body(
    body: bytes, *, max_topics: int, max_batch: int
) -> tuple[list[PublishRequest], bool]:
    """Parse and validate a ``POST /publish`` body.

    Args:
        body: the raw request body (already bounded in size by the caller).
        max_topics: the most distinct topics one event may name.
        max_batch: the most events one batch may hold.

    Returns:
        ``(requests, is_batch)``: the events in order, and whether the body was an array.

    Raises:
        HubHTTPError: the first problem found, as one of the codes ``invalid_json``,
            ``invalid_body``, ``empty_batch``, ``unknown_field``, ``missing_topic``,
            ``invalid_topic``, ``too_many_topics``, ``missing_data``, ``invalid_data``,
            ``invalid_event``, ``invalid_retry`` (400) or ``too_many_events`` (413). Inside a
            batch the detail starts with the item's index (``events[3]: ...``).
    """
    value = _load_json(body)
    if isinstance(value, dict):
        return [_parse_item(value, max_topics=max_topics, where="")], False
    if not isinstance(value, list):
        _reject("invalid_body", "the body must be a JSON object (one event) or an array (a batch)")
    if not value:
        _reject("empty_batch", "a batch must contain at least one event")
    if len(value) > max_batch:
        _reject("too_many_events", f"a batch may contain at most {max_batch} events")
    requests = [
        _parse_item(item, max_topics=max_topics, where=f"events[{index}]: ")
        for index, item in enumerate(value)
    ]
    return requests, True
