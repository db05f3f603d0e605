"""Typed payload <-> SSE event: the kind is the ``event:`` field, the payload is JSON ``data:``.

Encoding (server side)::

    id: 41
    event: task.progress
    data: {"task_id":"a","percent":40.0}

Decoding (client side) takes a :class:`ssehub.wire.MessageEvent` from the parser, checks that its
type names the expected kind, parses the JSON and validates it against the kind's payload type.
Invalid payloads raise :class:`ssehub.SchemaValidationError` on *both* sides, so a server bug is
caught before it reaches the wire and a client never hands a malformed object to application code.
"""

from __future__ import annotations

import json
from typing import Any

from .._exceptions import EventValidationError, SchemaValidationError
from ..wire import MessageEvent, ServerSentEvent
from ._types import TypeAdapter

__all__ = ["decode_payload", "encode_payload", "parse_json"]


def encode_payload(
    kind: str,
    adapter: TypeAdapter,
    payload: Any,
    *,
    id: str | int | None = None,
    retry: int | None = None,
) -> ServerSentEvent:
    """Validate ``payload`` and encode it as one event of type ``kind``.

    Args:
        kind: the event kind, written as the ``event:`` field.
        adapter: the adapter of the kind's payload type.
        payload: the typed value.
        id: the event id, as for :class:`ssehub.ServerSentEvent`.
        retry: the reconnection time in milliseconds.

    Returns:
        The event, with the payload as compact JSON in ``data``.

    Raises:
        SchemaValidationError: the payload does not match the declared type.
        EventValidationError: ``id`` or ``retry`` is invalid.
    """
    try:
        value = adapter.dump(payload)
    except ValueError as exc:
        raise SchemaValidationError(kind, str(exc)) from None
    try:
        return ServerSentEvent.json(value, event=kind, id=id, retry=retry)
    except EventValidationError as exc:
        if exc.field == "data":  # e.g. NaN in a float field: not JSON
            raise SchemaValidationError(kind, str(exc)) from exc
        raise


def parse_json(kind: str, data: str) -> Any:
    """Parse ``data`` as JSON, raising :class:`SchemaValidationError` for ``kind`` if it is not."""
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise SchemaValidationError(kind, f"data is not JSON: {exc.args[0]}") from None
    except RecursionError:
        raise SchemaValidationError(kind, "data is nested too deeply") from None


def decode_payload(kind: str, adapter: TypeAdapter, message: MessageEvent) -> Any:
    """Decode the typed payload of ``message``, which must be an event of type ``kind``.

    Args:
        kind: the expected event kind.
        adapter: the adapter of the kind's payload type.
        message: a dispatched event from :class:`ssehub.wire.EventParser`.

    Returns:
        The typed payload (a dataclass instance, a dict for a TypedDict, a pydantic model, ...).

    Raises:
        SchemaValidationError: the event type is not ``kind``, the data is not JSON, or the JSON
            does not match the declared type.
    """
    if message.event != kind:
        raise SchemaValidationError(kind, f"event type is {message.event!r}")
    try:
        return adapter.load(parse_json(kind, message.data))
    except ValueError as exc:
        if isinstance(exc, SchemaValidationError):
            raise
        raise SchemaValidationError(kind, str(exc)) from None
