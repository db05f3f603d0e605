"""Declaring a protocol: a name, its versions, and event kinds with typed payloads.

::

    tasks = EventProtocol("tasks", versions=["1", "2"], features=["batching"])
    progress = tasks.kind("task.progress", TaskProgress, batchable=True)
    removed = tasks.kind("task.removed", TaskRemoved, versions=["2"])

    event = progress.encode(TaskProgress(task_id="a", percent=40.0), id=41)
    typed = tasks.decode(message)   # TypedEvent(kind="task.progress", payload=..., id="41")

Versions are listed oldest first; "the best version" is the newest one both sides support. A
kind may be declared twice with different payload types for disjoint sets of versions, which is how
a payload changes shape between versions. Event names starting with ``protocol.`` are reserved for
the handshake, batch and error events of this package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, overload

from .._exceptions import ConfigurationError, SchemaValidationError
from ..wire import MessageEvent, ServerSentEvent
from ._codec import decode_payload, encode_payload
from ._types import adapter_for

__all__ = [
    "BATCH_EVENT",
    "ERROR_EVENT",
    "HANDSHAKE_EVENT",
    "RESERVED_PREFIX",
    "EventKind",
    "EventProtocol",
    "TypedEvent",
]

T = TypeVar("T")

RESERVED_PREFIX: Final = "protocol."
HANDSHAKE_EVENT: Final = "protocol.handshake"
BATCH_EVENT: Final = "protocol.batch"
ERROR_EVENT: Final = "protocol.error"

_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
"""Protocol names, versions and features: short, header-safe and URL-safe tokens."""


def is_token(value: object) -> bool:
    """Whether ``value`` is a valid protocol name, version or feature token."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def check_token(what: str, value: str) -> str:
    """Return ``value`` if it is a valid token, else raise :class:`ConfigurationError`."""
    if not is_token(value):
        raise ConfigurationError(f"{what} must match {_TOKEN.pattern}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TypedEvent(Generic[T]):
    """A decoded event: its kind, its typed payload and the stream's last event id.

    Attributes:
        kind: the event kind (the SSE event type).
        payload: the typed payload.
        id: the last event ID string when the event was dispatched (``""`` when none).
    """

    kind: str
    payload: T
    id: str = ""


class EventKind(Generic[T]):
    """One kind of event in a protocol, with the type of its payload.

    Created by :meth:`EventProtocol.kind`; not meant to be built directly.

    Attributes:
        name: the event name on the wire.
        payload_type: the declared payload type.
        batchable: whether the kind may be grouped into batch events (high-frequency kinds).
        versions: the protocol versions in which the kind exists.
    """

    __slots__ = ("_adapter", "batchable", "name", "payload_type", "protocol", "versions")

    def __init__(
        self,
        protocol: EventProtocol,
        name: str,
        payload_type: Any,
        *,
        batchable: bool,
        versions: tuple[str, ...],
    ) -> None:
        self.protocol = protocol
        self.name = name
        self.payload_type = payload_type
        self.batchable = batchable
        self.versions = versions
        try:
            self._adapter = adapter_for(payload_type)
        except TypeError as exc:
            raise ConfigurationError(f"event kind {name!r}: {exc}") from exc

    def validate(self, payload: T) -> T:
        """Check ``payload`` against the declared type and return it unchanged.

        Raises:
            SchemaValidationError: the payload does not match.
        """
        try:
            self._adapter.dump(payload)
        except ValueError as exc:
            raise SchemaValidationError(self.name, str(exc)) from None
        return payload

    def encode(
        self, payload: T, *, id: str | int | None = None, retry: int | None = None
    ) -> ServerSentEvent:
        """Encode ``payload`` as an event of this kind.

        Args:
            payload: the typed payload.
            id: the event id.
            retry: the reconnection time in milliseconds.

        Returns:
            The event (``event:`` is the kind, ``data:`` the payload as JSON).

        Raises:
            SchemaValidationError: the payload does not match the declared type.
        """
        return encode_payload(self.name, self._adapter, payload, id=id, retry=retry)

    def decode(self, message: MessageEvent) -> T:
        """Decode the typed payload of ``message``.

        Raises:
            SchemaValidationError: the event is of another kind, or its data does not match.
        """
        result: T = decode_payload(self.name, self._adapter, message)
        return result

    def load(self, value: Any) -> T:
        """Build the typed payload from an already parsed JSON value.

        Raises:
            SchemaValidationError: the value does not match the declared type.
        """
        try:
            result: T = self._adapter.load(value)
        except ValueError as exc:
            raise SchemaValidationError(self.name, str(exc)) from None
        return result

    def __repr__(self) -> str:
        return f"EventKind({self.protocol.name}:{self.name}, versions={list(self.versions)})"


class EventProtocol:
    """A named, versioned set of event kinds with typed payloads.

    Args:
        name: the protocol name (a token: letters, digits, ``.``, ``_``, ``-``).
        versions: the versions this server speaks, oldest first (tokens; ints are converted).
        features: optional features the server can enable when a client asks, for example
            ``"batching"``.
        description: one line for the handshake and the 406 body.

    Raises:
        ConfigurationError: a name, version or feature is not a valid token, or none is given.
    """

    def __init__(
        self,
        name: str,
        versions: Sequence[str | int],
        *,
        features: Iterable[str] = (),
        description: str = "",
    ) -> None:
        self.name = check_token("protocol name", name)
        self.versions: tuple[str, ...] = tuple(
            check_token("protocol version", str(v)) for v in versions
        )
        if not self.versions:
            raise ConfigurationError(f"protocol {name!r} declares no versions")
        if len(set(self.versions)) != len(self.versions):
            raise ConfigurationError(f"protocol {name!r} declares a version twice")
        self.features: frozenset[str] = frozenset(check_token("feature", f) for f in features)
        self.description = description
        self._kinds: list[EventKind[Any]] = []

    @property
    def latest(self) -> str:
        """The newest version."""
        return self.versions[-1]

    @overload
    def kind(
        self,
        name: str,
        payload_type: type[T],
        *,
        batchable: bool = ...,
        versions: Iterable[str | int] | None = ...,
    ) -> EventKind[T]: ...

    @overload
    def kind(
        self,
        name: str,
        payload_type: Any,
        *,
        batchable: bool = ...,
        versions: Iterable[str | int] | None = ...,
    ) -> EventKind[Any]: ...

    def kind(
        self,
        name: str,
        payload_type: Any,
        *,
        batchable: bool = False,
        versions: Iterable[str | int] | None = None,
    ) -> EventKind[Any]:
        """Declare an event kind.

        Args:
            name: the event name on the wire (no CR or LF; not starting with ``protocol.``).
            payload_type: a dataclass, TypedDict, pydantic model, msgspec Struct, or any type
                hint the converter supports (``str``, ``list[int]``, ...).
            batchable: allow grouping into batch events when the client enables batching.
            versions: the versions that have this kind (default: all).

        Returns:
            The kind, whose ``encode``/``decode`` methods are typed by ``payload_type``.

        Raises:
            ConfigurationError: the name is invalid or reserved, a version is unknown, the kind
                already exists in one of these versions, or the payload type is not supported.
        """
        if not isinstance(name, str) or not name or "\n" in name or "\r" in name:
            raise ConfigurationError(f"invalid event kind name {name!r}")
        if name.startswith(RESERVED_PREFIX):
            raise ConfigurationError(f"event names starting with {RESERVED_PREFIX!r} are reserved")
        chosen = self.versions if versions is None else tuple(str(v) for v in versions)
        unknown = [v for v in chosen if v not in self.versions]
        if unknown or not chosen:
            raise ConfigurationError(f"kind {name!r}: unknown versions {unknown or '(none)'}")
        for existing in self._kinds:
            if existing.name == name and set(existing.versions) & set(chosen):
                raise ConfigurationError(f"kind {name!r} is already declared for these versions")
        ordered = tuple(v for v in self.versions if v in chosen)
        kind: EventKind[Any] = EventKind(
            self, name, payload_type, batchable=batchable, versions=ordered
        )
        self._kinds.append(kind)
        return kind

    def check_version(self, version: str | int) -> str:
        """Return ``version`` as text if this protocol has it.

        Raises:
            ConfigurationError: the version is not declared.
        """
        text = str(version)
        if text not in self.versions:
            raise ConfigurationError(f"protocol {self.name!r} has no version {text!r}")
        return text

    def kinds(self, version: str | int | None = None) -> list[EventKind[Any]]:
        """The kinds of ``version`` (default: the latest), in declaration order."""
        text = self.latest if version is None else self.check_version(version)
        return [k for k in self._kinds if text in k.versions]

    def get_kind(self, name: str, version: str | int | None = None) -> EventKind[Any]:
        """Look up a kind by name in ``version`` (default: the latest).

        Raises:
            SchemaValidationError: the version has no such kind.
        """
        for kind in self.kinds(version):
            if kind.name == name:
                return kind
        raise SchemaValidationError(name, f"not an event kind of {self.name} {version or ''}")

    def encode(
        self,
        kind: str | EventKind[Any],
        payload: Any,
        *,
        id: str | int | None = None,
        retry: int | None = None,
        version: str | int | None = None,
    ) -> ServerSentEvent:
        """Encode ``payload`` as an event of ``kind``, checking the kind exists in ``version``.

        Raises:
            SchemaValidationError: unknown kind, or the payload does not match its type.
        """
        name = kind if isinstance(kind, str) else kind.name
        return self.get_kind(name, version).encode(payload, id=id, retry=retry)

    def decode(self, message: MessageEvent, version: str | int | None = None) -> TypedEvent[Any]:
        """Decode a dispatched event into a :class:`TypedEvent`.

        Raises:
            SchemaValidationError: the event type is not a kind of ``version`` (default: the
                latest) or its payload does not match.
        """
        kind = self.get_kind(message.event, version)
        return TypedEvent(kind.name, kind.decode(message), message.id)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: name, versions (oldest first), kinds per version, features."""
        return {
            "name": self.name,
            "description": self.description,
            "versions": list(self.versions),
            "latest": self.latest,
            "features": sorted(self.features),
            "kinds": {v: [k.name for k in self.kinds(v)] for v in self.versions},
        }

    def __repr__(self) -> str:
        return f"EventProtocol({self.name!r}, versions={list(self.versions)})"
