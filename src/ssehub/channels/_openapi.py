"""The OpenAPI description of the hub's channel routes (merged into the hub's document)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._message import END_OF_STREAM, MAX_TYPE_LENGTH

if TYPE_CHECKING:
    from ..hub._settings import HubSettings

__all__ = ["channel_paths"]

_NAME: Final = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_.\-]{1,64}$",
    "description": "1-64 characters of `A-Z a-z 0-9 _ . -`.",
}

_MESSAGE: Final = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TYPE_LENGTH,
            "description": "The message type, sent as the SSE `event:` field (default "
            f"`message`). Types starting with `ssehub.` are reserved; `{END_OF_STREAM}` "
            "stops the listener(s) after what is already queued and ends their streams.",
        },
        "payload": {"description": "Any JSON value, sent as compact JSON in `data:`."},
    },
    "additionalProperties": False,
}

_SENT: Final = {
    "type": "object",
    "properties": {
        "id": {
            "type": ["string", "null"],
            "description": f"The message id (`null` for `{END_OF_STREAM}`).",
        },
        "listeners": {"type": "integer", "description": "Listeners it was queued for."},
    },
    "required": ["id", "listeners"],
}

_CHANNEL: Final = {
    "type": "object",
    "properties": {"name": _NAME, "listeners": {"type": "integer"}},
    "required": ["name", "listeners"],
}


def _error(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_UNKNOWN_CHANNEL: Final = _error("No such channel.", ["unknown_channel"])
_UNKNOWN_IDS: Final = _error(
    "No such channel or listener.", ["unknown_channel", "unknown_listener"]
)
_BAD_MESSAGE: Final = _error(
    "Invalid body or message.",
    ["invalid_json", "invalid_body", "unknown_field", "invalid_event", "invalid_data"],
)
_REJECTED: Final = _error("A listener's on_message hook refused the message.", ["message_rejected"])
_RATE_LIMITED: Final = _error(
    "Over the sender's publish rate (`publish_rate`; the bucket POST /publish uses).",
    ["rate_limited"],
)


def channel_paths(settings: HubSettings) -> dict[str, Any]:
    """Return the ``paths`` entries of the channel routes.

    Args:
        settings: the hub's settings (limits appear in the descriptions).

    Returns:
        Path items keyed by path, ready to merge into the hub's document.
    """
    channel_param = {"name": "channel", "in": "path", "required": True, "schema": _NAME}
    listener_param = {"name": "listener", "in": "path", "required": True, "schema": _NAME}
    return {
        "/channels": {
            "post": {
                "summary": "Create a channel",
                "description": f"At most {settings.max_channels} channels.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"name": _NAME},
                        "required": ["name"],
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "200": _ok("The new channel.", _CHANNEL),
                    "400": _error("Invalid body or name.", ["invalid_json", "invalid_name"]),
                    "409": _error(
                        "The name is taken, or the hub has its maximum of channels.",
                        ["already_exists", "limit_reached"],
                    ),
                },
            },
            "get": {
                "summary": "List the channels",
                "responses": {
                    "200": _ok(
                        "Every channel, sorted by name.",
                        {
                            "type": "object",
                            "properties": {"channels": {"type": "array", "items": _CHANNEL}},
                            "required": ["channels"],
                        },
                    )
                },
            },
        },
        "/channels/{channel}": {
            "delete": {
                "summary": "Delete a channel",
                "description": "Its listeners' streams end with an `ssehub.end` event.",
                "parameters": [channel_param],
                "responses": {
                    "200": _ok(
                        "Deleted.",
                        {
                            "type": "object",
                            "properties": {"name": _NAME, "removed": {"type": "boolean"}},
                        },
                    ),
                    "404": _UNKNOWN_CHANNEL,
                },
            }
        },
        "/channels/{channel}/listeners": {
            "post": {
                "summary": "Create a listener",
                "description": "Returns its id and the URL of its event stream. A listener "
                f"without a connected client is removed after {settings.listener_linger:g} s "
                f"(at most {settings.max_listeners} listeners per channel).",
                "parameters": [channel_param],
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"id": _NAME},
                        "additionalProperties": False,
                    },
                    required=False,
                ),
                "responses": {
                    "200": _ok(
                        "The new listener.",
                        {
                            "type": "object",
                            "properties": {
                                "channel": _NAME,
                                "id": _NAME,
                                "events": {"type": "string"},
                            },
                            "required": ["channel", "id", "events"],
                        },
                    ),
                    "400": _error("Invalid body or id.", ["invalid_json", "invalid_name"]),
                    "404": _UNKNOWN_CHANNEL,
                    "409": _error(
                        "The id is taken, or the channel is full.",
                        ["already_exists", "limit_reached"],
                    ),
                },
            }
        },
        "/channels/{channel}/listeners/{listener}/events": {
            "get": {
                "summary": "A listener's messages (Server-Sent Events)",
                "description": "Each message is one event: `event:` its type, `data:` its "
                "payload as JSON, `id:` its id. Reconnect with `Last-Event-ID` to resume. "
                f"The stream ends with an `{END_OF_STREAM}` event when the listener is "
                "stopped or removed: do not reconnect then. One stream per listener.",
                "parameters": [
                    channel_param,
                    listener_param,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error(
                        "Last-Event-ID longer than max_last_event_id_length.",
                        ["last_event_id_too_long"],
                    ),
                    "404": _UNKNOWN_IDS,
                    "409": _error("Another client streams this listener.", ["listener_busy"]),
                },
            }
        },
        "/channels/{channel}/broadcast": {
            "post": {
                "summary": "Send a message to every listener of a channel",
                "parameters": [channel_param],
                "requestBody": _body(_MESSAGE),
                "responses": {
                    "200": _ok("Queued.", _SENT),
                    "400": _BAD_MESSAGE,
                    "404": _UNKNOWN_CHANNEL,
                    "422": _REJECTED,
                    "429": _RATE_LIMITED,
                },
            }
        },
        "/channels/{channel}/listeners/{listener}/messages": {
            "post": {
                "summary": "Send a message to one listener (dispatch)",
                "parameters": [channel_param, listener_param],
                "requestBody": _body(_MESSAGE),
                "responses": {
                    "200": _ok("Queued.", _SENT),
                    "400": _BAD_MESSAGE,
                    "404": _UNKNOWN_IDS,
                    "422": _REJECTED,
                    "429": _RATE_LIMITED,
                },
            }
        },
    }
