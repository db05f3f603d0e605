"""``POST /publish`` bodies: JSON bytes in, validated :class:`PublishRequest` values out.

The body is either one object or an array of objects (a batch). A batch is validated entirely
before anything is published, so a bad item rejects the whole batch and nothing of it reaches
subscribers. One object::

    {"topic": "orders", "data": "text or any JSON value", "event": "created", "retry": 3000}

``topics`` (a list) may replace ``topic``. A ``str`` ``data`` is delivered verbatim (it may span
several lines: the encoder writes one ``data:`` line per line, WHATWG HTML §9.2.5); any other
JSON value is delivered as compact JSON text. Ids are assigned by the broker, so ``id`` is
refused, as is every other unknown field (a typo such as ``evnet`` must not be silently dropped).
An ``idempotency_key`` names an event's publication, so a retry stores nothing new; events
without one take theirs from the ``Idempotency-Key`` header (:func:`idempotency_keys`).

The body's type is declared once, by :func:`publish_types`: msgspec types built for the hub's
limits (topic length, topics per event, events per batch). :func:`parse_publish_body` decodes
with them and the OpenAPI document shows their schema (:func:`publish_schemas`), so the two
cannot drift. Two rules a JSON Schema states with keywords msgspec does not check are
enforced here (``_request``): exactly one of ``topic`` and ``topics`` (``oneOf``, stated by
:data:`EVENT_RULES`) and the reserved ``ssehub.`` types (``not``, stated by
:data:`~ssehub.hub._models.EventType`: 403, not 400); ``retry`` is a type of its own
(:class:`~ssehub.hub._models.RetryMs`). Every error a type reports maps to an error code by the
field it concerns (:data:`FIELD_ERRORS`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NoReturn, Union

from .._exceptions import InvalidTopic
from ..broker.events import RESERVED_EVENT_PREFIX
from ..broker.publication import MAX_IDEMPOTENCY_KEY_LENGTH, check_idempotency_key
from ..broker.topics import MAX_TOPIC_LENGTH, validate_topic
from ..wire import MAX_RETRY
from ..wire._json import dumps
from ._errors import HubHTTPError
from ._models import (
    MAX_EVENT_TYPE_LENGTH,
    UNSET,
    EventType,
    Meta,
    Retry,
    UnsetType,
    dec_hook,
    msgspec,
    schema_components,
    topic_type,
    whole,
)

if TYPE_CHECKING:
    from ._auth import Principal

__all__ = [
    "EVENT_RULES",
    "FIELD_ERRORS",
    "IDEMPOTENCY_HEADER",
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_RETRY",
    "PublishRequest",
    "PublishTypes",
    "check_content_type",
    "check_topics",
    "idempotency_keys",
    "parse_publish_body",
    "publish_schemas",
    "publish_types",
    "scoped_keys",
]

FIELD_ERRORS: Final = {
    "topic": "invalid_topic",
    "topics": "invalid_topic",
    "data": "invalid_data",
    "event": "invalid_event",
    "retry": "invalid_retry",
    "private": "invalid_body",
    "idempotency_key": "invalid_idempotency_key",
}
"""The error code of a field whose value does not fit its type. Besides these, a body answers
``invalid_json``, ``invalid_body`` (not an object or an array of objects), ``empty_batch``,
``too_many_events`` (413), ``unknown_field``, ``missing_topic``, ``too_many_topics``,
``missing_data`` and ``reserved_event`` (403)."""

EVENT_RULES: Final = {
    "oneOf": [{"required": ["topic"]}, {"required": ["topics"]}],
}
"""Schema keywords of an event that its msgspec type cannot check (enforced by ``_request``):
exactly one of ``topic`` and ``topics``."""


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One validated event to publish.

    Attributes:
        topics: the distinct topics, in the order given.
        data: the text to deliver (a JSON ``data`` that was not a string, as compact JSON).
        event: the event type, or ``None`` for the default ``message``.
        retry: the client reconnection delay in milliseconds to send with it, or ``None``.
        private: whether the event reaches only subscribers granted one of its topics.
    """

    topics: tuple[str, ...]
    data: str
    event: str | None = None
    retry: int | None = None
    private: bool = False
    idempotency_key: str | None = None


IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
"""The request header naming a single-event publish, so that its retries store nothing new."""

IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=whole("[!-~]*"),
        description="Names this event's publication (visible ASCII): a retry with the same key "
        "within the history window stores nothing and answers the first result. Takes "
        "precedence over the `Idempotency-Key` header.",
    ),
]


@dataclass(frozen=True, slots=True)
class PublishTypes:
    """The types of ``POST /publish`` bodies for one set of limits (see :func:`publish_types`).

    Attributes:
        event: the Struct of one event (its schema is the ``PublishEvent`` component).
        body: one event or a batch of them (the request body's schema).
        decoder: decodes a body into :attr:`body`.
        max_topics: the most topics one event may name.
        max_batch: the most events a batch may hold.
        max_topic_length: the longest topic.
        private: how the ``private`` flag is typed (see :func:`publish_types`).
    """

    event: Any
    body: Any
    decoder: msgspec.json.Decoder[Any]
    max_topics: int
    max_batch: int
    max_topic_length: int
    private: bool | None


@lru_cache(maxsize=16)
def publish_types(
    *,
    max_topics: int,
    max_batch: int,
    max_topic_length: int = MAX_TOPIC_LENGTH,
    private: bool | None = True,
) -> PublishTypes:
    """Return the types of ``POST /publish`` bodies for these limits (built once, then cached).

    Args:
        max_topics: the most topics one event may name (``max_topics``; duplicates count).
        max_batch: the most events one batch may hold (``max_batch``).
        max_topic_length: the longest topic (``max_topic_length``; at most 256).
        private: whether an event may carry the ``private`` flag: ``True`` (``POST /publish``
            with authentication on), ``False`` (with authentication off: only ``false``, since
            no subscriber could be granted a private event) or ``None`` (no such field: the
            socket ingest, which has no notion of a subscriber's grants).
    """
    topic = topic_type(max_topic_length)
    topics = Annotated[
        list[topic],  # type: ignore[valid-type]
        Meta(
            min_length=1,
            max_length=max_topics,
            description="Several topics (duplicates are ignored, but count against the limit).",
        ),
    ]
    data = Annotated[
        Any,
        Meta(
            description="A string is delivered verbatim (multi-line allowed); any other JSON "
            "value is delivered as compact JSON text."
        ),
    ]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("topic", Union[topic, UnsetType], UNSET),  # noqa: UP007 - a runtime type
        ("topics", Union[topics, UnsetType], UNSET),  # noqa: UP007
        ("data", data),
        ("event", Union[EventType, None], None),  # noqa: UP007
        ("retry", Union[Retry, None], None),  # noqa: UP007
        ("idempotency_key", Union[IdempotencyKey, None], None),  # noqa: UP007
    ]
    if private is not None:
        description = (
            "Deliver only to subscribers whose token grants one of the event's topics, live "
            "and on replay. Needs authentication (400 `private_without_auth` when it is off)."
        )
        flag = bool if private else Literal[False]
        fields.append(("private", Annotated[flag, Meta(description=description)], False))
    event = msgspec.defstruct(
        "PublishEvent",
        fields,
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
        namespace={"__doc__": "One event. Give `topic` or `topics` (not both) and `data`."},
    )
    batch = Annotated[
        list[event],  # type: ignore[valid-type]
        Meta(min_length=1, max_length=max_batch, description="A batch, published in order."),
    ]
    body = Union[event, batch]  # type: ignore[valid-type]  # noqa: UP007
    return PublishTypes(
        event,
        body,
        msgspec.json.Decoder(body, dec_hook=dec_hook),
        max_topics,
        max_batch,
        min(max_topic_length, MAX_TOPIC_LENGTH),
        private,
    )


def publish_schemas(types: PublishTypes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the request body's schema and the components it refers to (``PublishEvent``).

    Args:
        types: the body's types (:func:`publish_types`).
    """
    (body,), components = schema_components([types.body])
    components["PublishEvent"].update(EVENT_RULES)
    return body, components


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
        max_topics: the most topics allowed; duplicates count, as the OpenAPI document's
            ``maxItems`` says.
        where: a prefix for error details (``"events[2]: "`` inside a batch).

    Returns:
        A non-empty tuple of valid, distinct topics.

    Raises:
        HubHTTPError: ``missing_topic``, ``invalid_topic`` or ``too_many_topics`` (all 400).
    """
    seen: dict[str, None] = {}
    for count, topic in enumerate(topics, 1):
        if count > max_topics:
            raise HubHTTPError(
                "too_many_topics", f"{where}too many topics (at most {max_topics} per request)"
            )
        try:
            seen[validate_topic(topic)] = None
        except InvalidTopic as exc:
            raise HubHTTPError("invalid_topic", f"{where}invalid topic: {exc.reason}") from None
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


# -- decoding with the types -----------------------------------------------------------------

_AT: Final = re.compile(r" - at `\$(?:\[(?P<index>\d+)\])?(?:\.(?P<field>\w+))?[^`]*`\Z")
_UNKNOWN: Final = "Object contains unknown field `"
_MISSING: Final = "Object missing required field `"
_RETRY_HINT: Final = f"'retry' must be an integer number of milliseconds, 0-{MAX_RETRY}"


def _hint(field: str, types: PublishTypes) -> str:
    return {
        "topic": f"invalid topic: 1-{types.max_topic_length} URI characters (RFC 3986) allowed",
        "topics": f"invalid topic: 'topics' must be a list of 1-{types.max_topics} topics",
        "data": "'data' must be a JSON value",
        "event": f"'event' must be 1-{MAX_EVENT_TYPE_LENGTH} characters without CR, LF or NUL",
        "retry": _RETRY_HINT,
        "private": "'private' must be true or false",
        "idempotency_key": _KEY_HINT,
    }[field]


def _type_error(message: str, types: PublishTypes) -> HubHTTPError:
    """Map what msgspec reports (``Expected `int` >= 0 - at `$[3].retry```) to the hub's code."""
    found = _AT.search(message)
    text = message if found is None else message[: found.start()]
    index = None if found is None else found["index"]
    field = None if found is None else found["field"]
    where = "" if index is None else f"events[{index}]: "
    if field is None:  # the body, or one event, as a whole
        if text.startswith(_UNKNOWN):
            name = text[len(_UNKNOWN) : -1]
            if name == "id":
                return HubHTTPError(
                    "unknown_field", f"{where}'id' cannot be set: the hub assigns event ids"
                )
            allowed = ", ".join(sorted(f.name for f in msgspec.structs.fields(types.event)))
            return HubHTTPError(
                "unknown_field", f"{where}unknown field {name[:64]!r}; allowed: {allowed}"
            )
        if text.startswith(_MISSING) and text[len(_MISSING) : -1] == "data":
            return HubHTTPError(
                "missing_data", f"{where}'data' is required (a string or any JSON value)"
            )
        if index is None and text.startswith("Expected `array` of length >="):
            return HubHTTPError("empty_batch", "a batch must contain at least one event")
        if index is None and text.startswith("Expected `array` of length <="):
            return HubHTTPError(
                "too_many_events", f"a batch may contain at most {types.max_batch} events"
            )
        if index is None:
            return HubHTTPError(
                "invalid_body", "the body must be a JSON object (one event) or an array (a batch)"
            )
        return HubHTTPError("invalid_body", f"{where}each event must be a JSON object")
    if field == "private" and types.private is False and text.startswith("Invalid enum value"):
        return HubHTTPError(
            "private_without_auth",
            "private events need authentication (--auth jwt or api_key): with auth off, no "
            "subscriber could ever be authorized to receive them",
        )
    if field == "data" and "out of range" in text:
        # 1e999 (Infinity, not JSON) or an integer of thousands of digits.
        return HubHTTPError("invalid_json", f"the body is not valid JSON: {text} in {where}'data'")
    if field == "topics" and text.startswith("Expected `array` of length >="):
        return HubHTTPError("missing_topic", f"{where}at least one topic is required")
    if field == "topics" and text.startswith("Expected `array` of length <="):
        return HubHTTPError(
            "too_many_topics", f"{where}too many topics (at most {types.max_topics} per request)"
        )
    # A pattern's regex says less than the hint; other messages add what the hint does not.
    detail = "" if "regex" in text else f" ({text[:200]})"
    return HubHTTPError(FIELD_ERRORS[field], f"{where}{_hint(field, types)}{detail}")


def _undecodable(body: bytes, reason: str) -> NoReturn:
    """Explain a body msgspec refused as JSON (``reason``): the standard library's reading of
    it says why; what it accepts, strings with a lone surrogate (which msgspec refuses and no
    UTF-8 stream can carry), is placed by field, as the field's error."""
    value = _load_json(body)  # raises invalid_json with the reason, if it is not JSON
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        where = f"events[{index}]: " if isinstance(value, list) else ""
        for key, field_value in item.items() if isinstance(item, dict) else ():
            if _has_lone_surrogate(field_value) or _has_lone_surrogate(key):
                code = FIELD_ERRORS.get(key, "unknown_field")
                _reject(code, f"{where}{key[:64]!r} contains a lone surrogate (not valid Unicode)")
    if _has_lone_surrogate(value):
        _reject("invalid_json", "the body contains a lone surrogate (not valid Unicode)")
    _reject("invalid_json", f"the body is not valid JSON: {reason[:200]}")


def _has_lone_surrogate(value: object) -> bool:
    # An explicit stack, not recursion: json.loads accepts nesting deep enough to exhaust the
    # interpreter's stack in a recursive walk (a RecursionError would be a 500).
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


def _request(item: Any, where: str) -> PublishRequest:
    """Apply :data:`EVENT_RULES` and the reserved types to a decoded event; return it as a
    :class:`PublishRequest` (``data`` as text)."""
    topics = item.topics
    if topics is UNSET:
        if item.topic is UNSET:
            _reject("missing_topic", f"{where}'topic' (or 'topics') is required")
        names: tuple[str, ...] = (item.topic,)
    elif item.topic is not UNSET:
        _reject("invalid_topic", f"{where}give either 'topic' or 'topics', not both")
    else:
        names = tuple(dict.fromkeys(topics))
    event = item.event
    if event is not None:
        check_not_reserved(event, f"{where}event types")
    retry = item.retry
    if retry is not None:
        retry = int(retry)  # a RetryMs, already in range
    data = item.data
    if type(data) is not str:
        try:
            data = dumps(data)
        except (TypeError, ValueError, RecursionError):
            _reject("invalid_data", f"{where}'data' cannot be written as compact JSON")
    private = getattr(item, "private", False)
    return PublishRequest(names, data, event, retry, private, item.idempotency_key)


_KEY_HINT: Final = (
    f"an idempotency key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters (! to ~)"
)


def idempotency_keys(
    headers: list[str], requests: list[PublishRequest], batch: bool
) -> list[str | None]:
    """Return the idempotency key of each event: its own ``idempotency_key``, else one from the
    request's ``Idempotency-Key`` header: the header itself for a single event, one derived
    from it and ``i`` (:func:`_item_key`) for event ``i`` of a batch, so a retried batch
    repeats every event's key. The hub then scopes them to the publisher (:func:`scoped_keys`).

    Args:
        headers: the values of the request's ``Idempotency-Key`` headers.
        requests: the parsed events.
        batch: whether the body was an array.

    Raises:
        HubHTTPError: ``invalid_idempotency_key`` (400): the header is repeated or invalid.
    """
    keys = [request.idempotency_key for request in requests]
    if not headers:
        return keys
    if len(headers) > 1:
        _reject("invalid_idempotency_key", f"send one {IDEMPOTENCY_HEADER} header, not several")
    try:
        key = check_idempotency_key(headers[0])
    except ValueError:
        _reject("invalid_idempotency_key", f"invalid {IDEMPOTENCY_HEADER}: {_KEY_HINT}")
    if not batch:
        return [key if keys[0] is None else keys[0]]
    return [_item_key(key, index) if own is None else own for index, own in enumerate(keys)]


def _item_key(key: str, index: int) -> str:
    """The key of event ``index`` of a batch sent with ``Idempotency-Key: key``.

    Joined with a control character no client key may contain, so it never equals a key a
    client names itself (:func:`scoped_keys` turns it into a valid key).
    """
    return f"{key}\x1f{index}"


def scoped_keys(principal: Principal, keys: list[str | None]) -> list[str | None]:
    """Return ``keys`` as the keys of ``principal``'s publications only: a digest of the
    publisher (the token's subject or the API key's name; every anonymous publisher is one)
    and the key, so one tenant's key neither blocks nor reveals another's."""
    owner = principal.subject or principal.identity or ""
    return [
        None
        if key is None
        else hashlib.blake2b(f"{owner}\x00{key}".encode(), digest_size=24).hexdigest()
        for key in keys
    ]


def parse_publish_body(
    body: bytes,
    *,
    max_topics: int,
    max_batch: int,
    max_topic_length: int = MAX_TOPIC_LENGTH,
    private: bool | None = None,
) -> tuple[list[PublishRequest], bool]:
    """Parse and validate a ``POST /publish`` body.

    Args:
        body: the raw request body (already bounded in size by the caller).
        max_topics: the most topics one event may name (duplicates count).
        max_batch: the most events one batch may hold.
        max_topic_length: the longest topic.
        private: how to read the ``private`` flag: ``True`` (a hub with authentication),
            ``False`` (a hub without: ``true`` answers ``private_without_auth``) or ``None``
            (an unknown field).

    Returns:
        ``(requests, is_batch)``: the events in order, and whether the body was an array.

    Raises:
        HubHTTPError: the first problem found, as one of the codes ``invalid_json``,
            ``invalid_body``, ``empty_batch``, ``unknown_field``, ``missing_topic``,
            ``invalid_topic``, ``too_many_topics``, ``missing_data``, ``invalid_data``,
            ``invalid_event``, ``invalid_retry``, ``invalid_idempotency_key``,
            ``private_without_auth`` (400), ``reserved_event`` (403) or ``too_many_events``
            (413). Inside a batch the detail
            starts with the item's index (``events[3]: ...``).
    """
    types = publish_types(
        max_topics=max_topics,
        max_batch=max_batch,
        max_topic_length=max_topic_length,
        private=private,
    )
    try:
        value = types.decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _type_error(str(exc), types) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        _undecodable(body, str(exc))
    except RecursionError:
        _reject("invalid_json", "the JSON is nested too deeply")
    if type(value) is not list:
        return [_request(value, "")], False
    return [_request(item, f"events[{index}]: ") for index, item in enumerate(value)], True
