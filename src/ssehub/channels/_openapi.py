"""The OpenAPI description of the hub's channel routes (merged into the hub's document).

The bodies are msgspec types (their schemas are generated, like the hub's own): the requests
are what the channel routes accept, the responses what they answer. Error responses come from
the hub's one table of codes per operation (``ssehub.hub._responses``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from ..broker.events import RESERVED_EVENT_PREFIX
from ..hub._models import (
    UNSET,
    ChannelDeleted,
    ChannelInfo,
    ChannelList,
    Meta,
    Struct,
    UnsetType,
    whole,
)
from ._listener import NAME_PATTERN
from ._message import END_OF_STREAM, MAX_TYPE_LENGTH

if TYPE_CHECKING:
    from ..hub._settings import HubSettings

__all__ = [
    "ChannelCreate",
    "ChannelMessage",
    "ListenerCreate",
    "ListenerCreated",
    "Name",
    "Sent",
    "channel_paths",
    "channel_types",
]

Name = Annotated[
    str,
    Meta(
        pattern=whole(NAME_PATTERN.pattern),
        description="1-64 characters of `A-Z a-z 0-9 _ . -`, not `.` or `..`.",
    ),
]
"""A channel name or listener id."""

MessageType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TYPE_LENGTH,
        pattern=whole(r"[^\r\n\x00]*"),
        description="The message type, sent as the SSE `event:` field (default `message`). "
        f"Types starting with `{RESERVED_EVENT_PREFIX}` are reserved (403 `reserved_event`); "
        f"`{END_OF_STREAM}` stops the listener(s) after what is already queued and ends their "
        "streams.",
        extra_json_schema={
            "anyOf": [{"not": {"pattern": r"^ssehub\."}}, {"const": END_OF_STREAM}],
        },
    ),
]


class ChannelCreate(Struct, forbid_unknown_fields=True):
    """A channel to create."""

    name: Name


class ListenerCreate(Struct, forbid_unknown_fields=True):
    """A listener to create (the body is optional; without `id` the hub picks one)."""

    id: Name | None = None


class ChannelMessage(Struct, forbid_unknown_fields=True):
    """A message for a channel's listeners."""

    type: MessageType | UnsetType = UNSET
    payload: Annotated[
        Any, Meta(description="Any JSON value, sent as compact JSON in `data:`.")
    ] = None


class ListenerCreated(Struct):
    """A new listener."""

    channel: Name
    id: Name
    events: Annotated[str, Meta(description="The path of its event stream.")]


class Sent(Struct):
    """A queued message."""

    id: Annotated[str | None, Meta(description=f"The message id (`null` for `{END_OF_STREAM}`).")]
    listeners: Annotated[int, Meta(ge=0, description="Listeners it was queued for.")]


channel_types: Final = (
    ChannelCreate,
    ListenerCreate,
    ChannelMessage,
    ChannelInfo,
    ChannelList,
    ChannelDeleted,
    ListenerCreated,
    Sent,
)
"""Every body of the channel routes, for the document's components."""


def _ref(model: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _ok(description: str, model: type) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _body(model: type, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(model)}}}


def channel_paths(settings: HubSettings, name: dict[str, Any]) -> dict[str, Any]:
    """Return the ``paths`` entries of the channel routes, without their error responses.

    Args:
        settings: the hub's settings (limits appear in the descriptions).
        name: the schema of a channel name (from :data:`Name`).

    Returns:
        Path items keyed by path, ready to merge into the hub's document.
    """
    channel_param = {"name": "channel", "in": "path", "required": True, "schema": name}
    listener_param = {"name": "listener", "in": "path", "required": True, "schema": name}
    last_event_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Resume after this id.",
        "schema": {"type": "string", "maxLength": settings.max_last_event_id_length},
    }
    return {
        "/channels": {
            "post": {
                "summary": "Create a channel",
                "description": f"At most {settings.max_channels} channels.",
                "requestBody": _body(ChannelCreate),
                "responses": {"200": _ok("The new channel.", ChannelInfo)},
            },
            "get": {
                "summary": "List the channels",
                "responses": {"200": _ok("Every channel, sorted by name.", ChannelList)},
            },
        },
        "/channels/{channel}": {
            "delete": {
                "summary": "Delete a channel",
                "description": f"Its listeners' streams end with an `{END_OF_STREAM}` event.",
                "parameters": [channel_param],
                "responses": {"200": _ok("Deleted.", ChannelDeleted)},
            }
        },
        "/channels/{channel}/listeners": {
            "post": {
                "summary": "Create a listener",
                "description": "Returns its id and the URL of its event stream. A listener "
                f"without a connected client is removed after {settings.listener_linger:g} s "
                f"(at most {settings.max_listeners} listeners per channel).",
                "parameters": [channel_param],
                "requestBody": _body(ListenerCreate, required=False),
                "responses": {"200": _ok("The new listener.", ListenerCreated)},
            }
        },
        "/channels/{channel}/listeners/{listener}/events": {
            "get": {
                "summary": "A listener's messages (Server-Sent Events)",
                "description": "Each message is one event: `event:` its type, `data:` its "
                "payload as JSON, `id:` its id. Reconnect with `Last-Event-ID` to resume. "
                f"The stream ends with an `{END_OF_STREAM}` event when the listener is "
                "stopped or removed: do not reconnect then. One stream per listener.",
                "parameters": [channel_param, listener_param, last_event_id],
                "responses": {
                    "200": {
                        "description": "The event stream: one `StreamEvent` per message.",
                        "content": {
                            "text/event-stream": {
                                "schema": {"$ref": "#/components/schemas/StreamEvent"}
                            }
                        },
                    }
                },
            }
        },
        "/channels/{channel}/broadcast": {
            "post": {
                "summary": "Send a message to every listener of a channel",
                "parameters": [channel_param],
                "requestBody": _body(ChannelMessage),
                "responses": {"200": _ok("Queued.", Sent)},
            }
        },
        "/channels/{channel}/listeners/{listener}/messages": {
            "post": {
                "summary": "Send a message to one listener (dispatch)",
                "parameters": [channel_param, listener_param],
                "requestBody": _body(ChannelMessage),
                "responses": {"200": _ok("Queued.", Sent)},
            }
        },
    }
