"""The client side of a typed protocol: handshake, errors, batches and typed decoding.

:class:`ProtocolClient` is sans-IO: feed it the :class:`ssehub.wire.MessageEvent` values your
transport's parser dispatches, get :class:`TypedEvent` values back. It

* reads the handshake and decodes later events with the negotiated version's kinds;
* turns a ``protocol.error`` event (browser-mode negotiation failure) into
  :class:`ssehub.NegotiationError`;
* unbatches ``protocol.batch`` events transparently, item by item, each with its own id;
* keeps :attr:`ProtocolClient.last_event_id` for the ``Last-Event-ID`` of the next connection.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import ConfigurationError, NegotiationError, SchemaValidationError
from ..wire import MessageEvent
from ._batching import unbatch
from ._codec import parse_json
from ._negotiation import ClientWants, Handshake
from ._schema import ERROR_EVENT, HANDSHAKE_EVENT, EventProtocol, TypedEvent

__all__ = ["ProtocolClient"]


class ProtocolClient:
    """Decodes a negotiated stream into typed events.

    Args:
        protocol: the protocol the client speaks (its declaration, shared with the server).
        versions: the versions this client accepts (default: all of ``protocol.versions``).
        features: the features this client handles; ``"batching"`` is always safe to ask for,
            since this class unbatches.
        last_event_id: the id to resume after, e.g. saved from a previous connection.
        ignore_unknown: skip events whose kind the negotiated version does not declare instead
            of raising (useful when servers may add kinds before clients learn them).

    Attributes:
        handshake: the server's handshake, once received.
        last_event_id: the id of the last event handed out (update it as you process items
            if you want to resume mid-batch: each :class:`TypedEvent` carries its own ``id``).

    Raises:
        ConfigurationError: none of ``versions`` is a version of ``protocol``.
    """

    def __init__(
        self,
        protocol: EventProtocol,
        *,
        versions: tuple[str, ...] | None = None,
        features: frozenset[str] = frozenset({"batching"}),
        last_event_id: str = "",
        ignore_unknown: bool = False,
    ) -> None:
        self.protocol = protocol
        self.wants = ClientWants(
            protocol=protocol.name,
            versions=versions if versions is not None else protocol.versions,
            features=features,
        )
        if not any(version in protocol.versions for version in self.wants.versions):
            # Checked now: the first feed() would otherwise fail with an IndexError.
            raise ConfigurationError(
                f"none of the versions {list(self.wants.versions)} is a version of protocol "
                f"{protocol.name!r} ({', '.join(protocol.versions)})"
            )
        self.handshake: Handshake | None = None
        self.last_event_id = last_event_id
        self.ignore_unknown = ignore_unknown

    @property
    def version(self) -> str:
        """The negotiated version (the newest accepted one before the handshake arrives)."""
        if self.handshake is not None:
            return self.handshake.version
        return [v for v in self.protocol.versions if v in self.wants.versions][-1]

    def request_headers(self) -> dict[str, str]:
        """Headers stating this client's wants, plus ``Last-Event-ID`` when resuming."""
        headers = self.wants.headers()
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def feed(self, message: MessageEvent) -> list[TypedEvent[Any]]:
        """Process one dispatched event; return the typed events it carries (often one).

        Raises:
            NegotiationError: the server sent a ``protocol.error`` event, or a handshake for
                another protocol or an unaccepted version.
            SchemaValidationError: a payload, batch or handshake is malformed, or (unless
                ``ignore_unknown``) the event kind is unknown.
        """
        if message.event == HANDSHAKE_EVENT:
            handshake = Handshake.from_message(message)
            if handshake.protocol != self.protocol.name or (
                handshake.version not in self.wants.versions
            ):
                raise NegotiationError(
                    f"server chose {handshake.protocol} {handshake.version}, which this client "
                    "does not speak"
                )
            self.handshake = handshake
            return []
        if message.event == ERROR_EVENT:
            value = parse_json(ERROR_EVENT, message.data)
            if not isinstance(value, dict):
                raise SchemaValidationError(ERROR_EVENT, "expected a JSON object")
            available = value.get("available")
            raise NegotiationError(
                str(value.get("detail", "negotiation failed")),
                available if isinstance(available, dict) else None,
            )
        # Decode the whole batch before moving last_event_id: if one item is invalid, nothing
        # is handed out and a reconnect resumes before the batch instead of skipping items.
        out: list[TypedEvent[Any]] = []
        last = self.last_event_id
        for item in unbatch(message, self.last_event_id):
            last = item.id
            try:
                kind = self.protocol.get_kind(item.event, self.version)
            except SchemaValidationError:
                if not self.ignore_unknown:
                    raise
                continue
            out.append(TypedEvent(kind.name, kind.decode(item), item.id))
        self.last_event_id = last
        return out
