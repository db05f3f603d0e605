"""What the items of a FastAPI event stream look like: on the wire, and in OpenAPI.

Private to :mod:`ssehub.fastapi`, which imports FastAPI first (and raises ``MissingDependency``
when it is missing). The wire rules are FastAPI's own (``fastapi.routing``, 0.135+), so a path
operation moved onto ssehub sends what it sent before; the schema is the ``itemSchema`` FastAPI
writes for its SSE routes.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from fastapi.encoders import jsonable_encoder
from fastapi.sse import ServerSentEvent as FastAPIServerSentEvent
from fastapi.sse import format_sse_event
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from ._exceptions import ConfigurationError, EventValidationError
from .broker.events import Dropped, Reset, StoredEvent
from .wire import ServerSentEvent

__all__ = [
    "NATIVE_ITEMS",
    "ItemEncoder",
    "adapter_for",
    "encode_async",
    "encode_sync",
    "item_schema",
]

_SSE_EVENT_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""One event as OpenAPI 3.2 describes ``text/event-stream`` items (§4.14.4), as FastAPI writes
it."""

NATIVE_ITEMS: Final = (ServerSentEvent, StoredEvent, Reset, Dropped)
"""ssehub's own events and a subscription's items: sent as they encode themselves."""

# --------------------------------------------------------------------------- items


class ItemEncoder:
    """Encodes one yielded item by FastAPI's SSE rules (``fastapi.routing``, 0.135+).

    * ``fastapi.sse.ServerSentEvent``: its fields; ``raw_data`` as it is, ``data`` as JSON (a
      pydantic model by its ``model_dump_json()``); never validated against the item type.
    * ssehub's :class:`~ssehub.ServerSentEvent` and a subscription's items: their own encoding.
    * anything else: validated against the item type when there is one (``from_attributes``, as
      FastAPI does, so ORM objects work), then sent as one ``data:`` line of compact JSON.
    """

    __slots__ = ("_adapter", "_dump_options", "item_type")

    def __init__(self, item_type: Any, dump_options: Mapping[str, Any] | None) -> None:
        self.item_type = item_type
        self._adapter: TypeAdapter[Any] | None = (
            None if item_type is None else adapter_for(item_type)
        )
        self._dump_options = {"by_alias": True, **(dump_options or {})}

    def __call__(self, item: Any) -> bytes:
        if isinstance(item, NATIVE_ITEMS):
            return item.encode()
        if isinstance(item, FastAPIServerSentEvent):
            return _fastapi_event(item)
        return b"data: " + self._data(item) + b"\n\n"

    def _data(self, item: Any) -> bytes:
        adapter = self._adapter
        if adapter is None:
            return _plain_json(item)
        try:
            value = adapter.validate_python(item, from_attributes=True)
        except ValidationError as exc:
            raise EventValidationError(
                "data", f"item does not match the stream's item type {_name(self.item_type)}: {exc}"
            ) from exc
        try:
            return adapter.dump_json(value, **self._dump_options)
        except ValueError as exc:  # pydantic's serialisation errors
            raise EventValidationError("data", f"item has no JSON form: {exc}") from exc


def adapter_for(item_type: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(item_type)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot stream items of type {_name(item_type)}: pydantic has no schema for it "
            f"({exc}); annotate the path operation with a type pydantic knows, or yield "
            "ServerSentEvent items"
        ) from exc


def _plain_json(value: Any) -> bytes:
    # FastAPI's rule for items without an item type: jsonable_encoder, then JSON, with NaN and
    # infinities as null.
    try:
        return to_json(jsonable_encoder(value), inf_nan_mode="null")
    except (TypeError, ValueError) as exc:
        raise EventValidationError(
            "data", f"{type(value).__name__} has no JSON form: {exc}"
        ) from exc


def _fastapi_event(item: FastAPIServerSentEvent) -> bytes:
    if item.raw_data is not None:
        data: str | None = item.raw_data
    elif item.data is None:
        data = None
    elif callable(getattr(item.data, "model_dump_json", None)):
        data = item.data.model_dump_json()
    else:
        data = _plain_json(item.data).decode()
    return format_sse_event(
        data_str=data, event=item.event, id=item.id, retry=item.retry, comment=item.comment
    )


async def encode_async(
    content: AsyncIterable[Any], encode: Callable[[Any], bytes]
) -> AsyncIterator[bytes]:
    iterator = content.__aiter__()
    try:
        async for item in iterator:
            yield encode(item)
    finally:
        # The response closes this generator (disconnect, timeout, shutdown): close the user's
        # right away, so its finally runs now and inside the response's bounded cleanup.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def encode_sync(content: Iterable[Any], encode: Callable[[Any], bytes]) -> Iterator[bytes]:
    iterator = iter(content)
    try:
        for item in iterator:
            yield encode(item)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _name(item_type: Any) -> str:
    return getattr(item_type, "__qualname__", None) or repr(item_type)


# --------------------------------------------------------------------------- OpenAPI


def item_schema(item_type: Any = None) -> dict[str, Any]:
    """Return the OpenAPI ``itemSchema`` of a ``text/event-stream`` whose data is ``item_type``.

    The shape is FastAPI's (OpenAPI 3.2, §4.14.4: an object with ``data``, ``event``, ``id``
    and ``retry``); with an item type, ``data`` is required and described as JSON text whose
    ``contentSchema`` is the type's serialisation schema, written inline (models nested in it
    too) so it holds whatever else the app's OpenAPI contains. A recursive model keeps its
    definitions under ``$defs``, resolved within the schema (it has its own ``$id``).

    Args:
        item_type: a type pydantic can describe, or ``None`` for events of any data.

    Raises:
        ConfigurationError: pydantic cannot describe ``item_type``.
    """
    schema = copy.deepcopy(dict(_SSE_EVENT_SCHEMA))
    if item_type is None:
        return schema
    content = adapter_for(item_type).json_schema(mode="serialization")
    schema["required"] = ["data"]
    schema["properties"]["data"] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": _inline_definitions(content, item_type),
    }
    return schema


class _Recursive(Exception):
    """A definition refers to itself: it cannot be written inline."""


def _inline_definitions(schema: dict[str, Any], item_type: Any) -> dict[str, Any]:
    definitions: dict[str, Any] = schema.get("$defs", {})
    if not definitions:
        return schema
    prefix = "#/$defs/"

    def resolve(node: Any, open_refs: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [resolve(value, open_refs) for value in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        rest = {key: resolve(value, open_refs) for key, value in node.items() if key != "$ref"}
        if not (isinstance(ref, str) and ref.startswith(prefix)):
            return rest if ref is None else {"$ref": ref, **rest}
        name = ref[len(prefix) :]
        if name in open_refs:
            raise _Recursive(name)
        return {**resolve(definitions[name], open_refs | {name}), **rest}

    try:
        inlined: dict[str, Any] = resolve(
            {key: value for key, value in schema.items() if key != "$defs"}, frozenset()
        )
    except _Recursive:
        # "#/$defs/..." resolves against the nearest $id (JSON Schema 2020-12, OpenAPI 3.1), so
        # the definitions stay together with the schema that uses them.
        return {"$id": f"urn:ssehub:item:{_name(item_type)}", **schema}
    return inlined
