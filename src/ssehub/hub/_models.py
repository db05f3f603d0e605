"""The bodies of the hub's HTTP API, each declared once, as a msgspec type.

A request body's type is what the hub decodes the request with (``POST /publish``: see
:mod:`ssehub.hub._publish`), and its OpenAPI schema is generated from the same type; a response
body's type generates the schema that the hub's answers are held to (the schemathesis test checks
every answer against it). Field descriptions live on the types, as ``Meta(description=...)``.

msgspec rather than pydantic: it decodes JSON straight into these types in C, which keeps
``POST /publish`` as fast as the hand-written checks it replaced (see the CHANGELOG), and it is a
small dependency of the ``hub`` extra.

Patterns are written for Python (``\\Z`` ends the string; Python's ``$`` also matches before a
final newline) and turned into ECMA-262 regular expressions, as JSON Schema reads them, when
the schema is generated (:func:`schema_components`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal

from .._exceptions import MissingDependency
from ..broker.events import RESERVED_EVENT_PREFIX
from ..broker.ids import _ID_RE
from ..broker.topics import MAX_TOPIC_LENGTH, TOPIC_PATTERN
from ..wire import MAX_RETRY

try:
    import msgspec
    from msgspec import UNSET, Meta, Struct, UnsetType
except ImportError as exc:  # pragma: no cover - msgspec is a dependency of the hub extra
    raise MissingDependency("msgspec", "hub") from exc

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "UNSET",
    "ChannelDeleted",
    "ChannelInfo",
    "ChannelList",
    "DashboardStats",
    "Error",
    "EventType",
    "Health",
    "Meta",
    "Published",
    "PublishedBatch",
    "Retry",
    "RetryMs",
    "Status",
    "StreamEvent",
    "Struct",
    "UnsetType",
    "dec_hook",
    "msgspec",
    "schema_components",
    "schema_hook",
    "topic_type",
    "whole",
]

MAX_EVENT_TYPE_LENGTH: Final = 256
"""Characters in an ``event`` type: far above any real type name, small enough to bound frames."""


def whole(pattern: str) -> str:
    """Return ``pattern`` anchored to match a whole string (``re.search`` then means fullmatch).

    Args:
        pattern: a Python regular expression without anchors.
    """
    return rf"^(?:{pattern})\Z"


def _ecma(node: Any) -> Any:
    """Return ``node`` (a JSON schema) with Python patterns spelled for ECMA-262: ``\\Z`` → ``$``
    (in ECMA-262 without the ``m`` flag, ``$`` matches only at the end of the input), and
    descriptions taken from docstrings on one line."""
    if isinstance(node, dict):
        converted = {key: _ecma(value) for key, value in node.items()}
        pattern = converted.get("pattern")
        if isinstance(pattern, str) and pattern.endswith(r"\Z"):
            converted["pattern"] = pattern[:-2] + "$"
        description = converted.get("description")
        if isinstance(description, str):
            converted["description"] = " ".join(description.split())
        return converted
    if isinstance(node, list):
        return [_ecma(value) for value in node]
    return node


def schema_components(types: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the JSON schemas of ``types`` and the named schemas (components) they refer to.

    Args:
        types: msgspec-compatible types.

    Returns:
        ``(schemas, components)``: one schema per type, in order (a ``$ref`` for a Struct), and
        the components keyed by name, with every pattern in ECMA-262 syntax.
    """
    schemas, components = msgspec.json.schema_components(
        tuple(types), schema_hook=schema_hook, ref_template="#/components/schemas/{name}"
    )
    return _ecma(list(schemas)), _ecma(dict(components))


# -- field types ---------------------------------------------------------------------------


def topic_type(max_length: int) -> Any:
    """Return the type of one topic, at most ``max_length`` characters (``max_topic_length``)."""
    return Annotated[
        str,
        Meta(
            min_length=1,
            max_length=min(max_length, MAX_TOPIC_LENGTH),
            pattern=whole(TOPIC_PATTERN.pattern),
            description="A topic: URI characters (RFC 3986), e.g. `orders` or `orders/42`.",
        ),
    ]


EventType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_EVENT_TYPE_LENGTH,
        pattern=whole(r"[^\r\n\x00]*"),
        description="The event type (default `message`): no CR, LF or NUL (they would end the "
        f"field line). Types starting with `{RESERVED_EVENT_PREFIX}` are the hub's own "
        "(403 `reserved_event`).",
        extra_json_schema={"not": {"pattern": "^" + re.escape(RESERVED_EVENT_PREFIX)}},
    ),
]
"""An event type a client may send. The reserved prefix is stated by the schema's ``not`` and
checked where the type is used (``check_not_reserved``), because it answers 403, not 400."""


class RetryMs(int):
    """A ``retry`` value: an integer number of milliseconds from 0 to :data:`~ssehub.wire.MAX_RETRY`
    (2**64 - 1, the most an EventSource parser honours: one bound for the wire and the hub).

    Its own type, decoded by :func:`dec_hook` and described by :func:`schema_hook`, because
    JSON Schema's ``integer`` includes numbers written with a zero fraction (``3000.0``, what
    Python's ``json.dumps`` writes for a float), which msgspec's ``int`` refuses, and because
    msgspec bounds integer constraints to 64-bit signed values.
    """

    __slots__ = ()

    SCHEMA: Final[Mapping[str, Any]] = {"type": "integer", "minimum": 0, "maximum": MAX_RETRY}
    """Its JSON schema: what :func:`dec_hook` accepts."""


def dec_hook(kind: type, value: Any) -> Any:
    """Decode the custom types of the bodies (msgspec calls it with the JSON value)."""
    if kind is RetryMs:
        if (type(value) is int or (type(value) is float and value.is_integer())) and (
            0 <= value <= MAX_RETRY
        ):
            return RetryMs(value)
        raise ValueError(f"Expected an integer from 0 to {MAX_RETRY}")
    raise NotImplementedError(kind)  # pragma: no cover - every custom type is handled above


def schema_hook(kind: type) -> dict[str, Any]:
    """Return the JSON schema of a custom type of the bodies."""
    if kind is RetryMs:
        return dict(RetryMs.SCHEMA)
    raise NotImplementedError(kind)  # pragma: no cover - every custom type is handled above


Retry = Annotated[
    RetryMs,
    Meta(
        description="The reconnection delay for clients, in milliseconds (the SSE `retry:` "
        "field), 0 to 2**64 - 1, the most an EventSource parser honours."
    ),
]
"""A ``retry`` field (see :class:`RetryMs`)."""

EventId = Annotated[
    str,
    Meta(
        pattern=whole(_ID_RE.pattern),
        description="An id assigned by the hub: 1-64 characters of `A-Z a-z 0-9 - _ . :`.",
    ),
]

_Count = Annotated[int, Meta(ge=0)]


# -- response bodies -----------------------------------------------------------------------


class Published(Struct):
    """One published event."""

    id: EventId
    topics: list[str]
    subscribers: Annotated[
        int, Meta(ge=0, description="Subscriptions in this process the event was queued for.")
    ]


class PublishedBatch(Struct):
    """A published batch: one entry per event, in order."""

    events: list[Published]


class TopicStatus(Struct):
    """One topic in `/status`."""

    subscribers: _Count
    history: _Count
    history_bytes: (
        Annotated[
            int,
            Meta(
                ge=0,
                description="Bytes its history holds (only to a caller who sees every topic).",
            ),
        ]
        | UnsetType
    ) = UNSET


class StatusTotals(Struct):
    """The broker's counters since it started."""

    published: _Count
    delivered: _Count
    dropped: _Count
    shed: _Count
    topics: _Count | UnsetType = UNSET
    history_bytes: (
        Annotated[
            int,
            Meta(
                ge=0,
                description="Bytes all history holds, each event once (only to a caller who "
                "sees every topic): compare with `history_total_bytes`.",
            ),
        ]
        | UnsetType
    ) = UNSET


class Status(Struct):
    """The hub's status. With authentication on, `topics` lists only the topics the
    credential's `subscribe` grant covers (every topic for `*`); `hidden_topics` then counts
    the others."""

    uptime: Annotated[float, Meta(ge=0, description="Seconds since the hub started.")]
    connections: Annotated[int, Meta(ge=0, description="Open topic streams.")]
    topics: Annotated[
        dict[str, TopicStatus],
        Meta(description="Topics with subscribers or history, by name."),
    ]
    totals: StatusTotals
    hidden_topics: (
        Annotated[
            int,
            Meta(
                ge=0,
                description="Topics not listed to this credential (present only when the list "
                "is filtered).",
            ),
        ]
        | UnsetType
    ) = UNSET


class Health(Struct):
    """A probe's answer."""

    status: Literal["ok", "degraded", "draining", "unavailable", "alive", "ready"]


class DashboardTopic(Struct):
    """One topic of the dashboard's statistics."""

    subscribers: _Count
    history: _Count
    events: Annotated[
        int,
        Meta(ge=0, description="Events fanned out here since the topic gained a subscriber."),
    ]


class DashboardStats(Struct):
    """Like `/status`, plus per-topic event counters for rates; at most 200 topics, most
    subscribers first."""

    process: str
    uptime: Annotated[float, Meta(ge=0)]
    draining: bool
    backend_up: bool
    connections: _Count
    topic_count: _Count
    topics: dict[str, DashboardTopic]
    totals: dict[str, _Count]
    subscribers: _Count | UnsetType = UNSET
    hidden_topics: _Count | UnsetType = UNSET


class Error(Struct):
    """Every error the hub answers. Branch on `error`; show `detail`."""

    error: str
    detail: Annotated[str, Meta(description="Human-readable; may change.")]
    outcome: (
        Annotated[
            Literal["unknown"],
            Meta(
                description="Only with 504 `outcome_unknown`: the publish may or may not be "
                "stored; retrying with the same idempotency key is safe."
            ),
        ]
        | UnsetType
    ) = UNSET


class StreamEvent(Struct):
    """One event of a `text/event-stream` response, as an EventSource parser reads it (the
    frame's `data:` lines joined by line feeds; comment lines such as heartbeats are not
    events)."""

    data: Annotated[
        str,
        Meta(description="The event's data: published text verbatim, or compact JSON text."),
    ]
    event: Annotated[
        str,
        Meta(
            min_length=1,
            description="The event type (`message` when the frame has no `event:` line). "
            "The hub's own notices use reserved types: `ssehub.reset` (data "
            '`{"reason": "malformed"|"unknown"|"expired"}`), `ssehub.dropped` (data '
            '`{"dropped": n}`) and, on channel listener streams, `ssehub.end`.',
        ),
    ] = "message"
    id: (
        Annotated[
            str,
            Meta(
                max_length=64,
                description="The id (`id:` line, or the last one seen): send it back as "
                "`Last-Event-ID` to resume after this event.",
            ),
        ]
        | UnsetType
    ) = UNSET
    retry: Retry | UnsetType = UNSET


# -- channel response bodies (requests: ssehub.channels._openapi) ----------------------------


class ChannelInfo(Struct):
    """A channel."""

    name: str
    listeners: _Count


class ChannelList(Struct):
    """Every channel, sorted by name."""

    channels: list[ChannelInfo]


class ChannelDeleted(Struct):
    """A deleted channel."""

    name: str
    removed: bool
