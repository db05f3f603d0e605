"""Negotiation: the client states what it wants, the server picks the best common version.

The client states its wants with request headers, or with query parameters when it is a browser
(``EventSource`` cannot set headers)::

    X-Protocol: tasks                 ?protocol=tasks
    X-Protocol-Version: 2, 1          ?protocol_version=2,1
    X-Client-Features: batching       ?features=batching

Headers win over query parameters. The server picks the newest version that both sides support
(any version when the client names none), enables the features both sides know (unknown client
features are ignored, so clients can be newer than servers), and sends a handshake event first::

    event: protocol.handshake
    data: {"protocol":"tasks","version":"2","server_versions":["1","2"],
           "kinds":["task.progress"],"features":["batching"]}

The handshake carries no ``id``, so it never moves the client's Last-Event-ID. An unknown protocol
or version raises :class:`ssehub.NegotiationError`, whose ``available`` lists what the server has;
``ssehub.protocols.negotiation_error_response`` renders it (406 JSON or a browser-mode event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._exceptions import ConfigurationError, NegotiationError, SchemaValidationError
from ..wire import MessageEvent, ServerSentEvent
from ._codec import parse_json
from ._schema import HANDSHAKE_EVENT, EventKind, EventProtocol, is_token

__all__ = [
    "FEATURES_HEADER",
    "FEATURES_QUERY",
    "PROTOCOL_HEADER",
    "PROTOCOL_QUERY",
    "VERSION_HEADER",
    "VERSION_QUERY",
    "ClientWants",
    "Handshake",
    "Negotiated",
    "Negotiator",
]

PROTOCOL_HEADER: Final = "x-protocol"
VERSION_HEADER: Final = "x-protocol-version"
FEATURES_HEADER: Final = "x-client-features"
PROTOCOL_QUERY: Final = "protocol"
VERSION_QUERY: Final = "protocol_version"
FEATURES_QUERY: Final = "features"

_MAX_VALUE: Final = 512
"""Bound on one header or query value: a few dozen tokens is plenty, and the value is untrusted."""
_MAX_ITEMS: Final = 16


def _tokens(what: str, raw: str) -> tuple[str, ...]:
    if len(raw) > _MAX_VALUE:
        raise NegotiationError(f"{what} is longer than {_MAX_VALUE} characters")
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if len(items) > _MAX_ITEMS:
        raise NegotiationError(f"{what} lists more than {_MAX_ITEMS} items")
    if not all(is_token(item) for item in items):
        # Never echo untrusted input back; say what is expected instead.
        raise NegotiationError(f"{what} must be a comma-separated list of tokens ([A-Za-z0-9._-])")
    return items


@dataclass(frozen=True, slots=True)
class ClientWants:
    """What a client asks for.

    Attributes:
        protocol: the protocol name, or ``None`` for the server's default.
        versions: acceptable versions (any order); empty means "any".
        features: features the client can handle, e.g. ``{"batching"}``.
        from_query: the wants came from query parameters (a browser ``EventSource``).
    """

    protocol: str | None = None
    versions: tuple[str, ...] = ()
    features: frozenset[str] = field(default_factory=frozenset)
    from_query: bool = False

    @classmethod
    def parse(
        cls, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> ClientWants:
        """Read the wants from request headers, falling back to query parameters.

        Args:
            headers: the request headers (a Starlette ``Headers`` or any mapping; names are
                matched case-insensitively).
            query: the query parameters.

        Raises:
            NegotiationError: a value is too long, lists too many items or has invalid tokens.
        """
        # A header sent twice is one comma-separated list (RFC 9110, section 5.3), so two
        # X-Protocol lines are refused as one "a, b" value is, not decided by the last one.
        lowered: dict[str, str] = {}
        for name, value in headers.items():
            key = name.lower()
            lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
        query = query or {}
        from_query = False
        values: dict[str, str] = {}
        for key, header, param in (
            ("protocol", PROTOCOL_HEADER, PROTOCOL_QUERY),
            ("versions", VERSION_HEADER, VERSION_QUERY),
            ("features", FEATURES_HEADER, FEATURES_QUERY),
        ):
            if header in lowered:
                values[key] = lowered[header]
            elif param in query:
                values[key] = query[param]
                from_query = True
        protocol = _tokens("protocol", values.get("protocol", ""))
        if len(protocol) > 1:
            raise NegotiationError("name exactly one protocol")
        return cls(
            protocol=protocol[0] if protocol else None,
            versions=_tokens("protocol version", values.get("versions", "")),
            features=frozenset(_tokens("features", values.get("features", ""))),
            from_query=from_query,
        )

    def headers(self) -> dict[str, str]:
        """These wants as request headers (for non-browser clients)."""
        out: dict[str, str] = {}
        if self.protocol:
            out["X-Protocol"] = self.protocol
        if self.versions:
            out["X-Protocol-Version"] = ", ".join(self.versions)
        if self.features:
            out["X-Client-Features"] = ", ".join(sorted(self.features))
        return out

    def query_params(self) -> dict[str, str]:
        """These wants as query parameters (for browser ``EventSource`` URLs)."""
        out: dict[str, str] = {}
        if self.protocol:
            out[PROTOCOL_QUERY] = self.protocol
        if self.versions:
            out[VERSION_QUERY] = ",".join(self.versions)
        if self.features:
            out[FEATURES_QUERY] = ",".join(sorted(self.features))
        return out


@dataclass(frozen=True, slots=True)
class Handshake:
    """The first event of a negotiated stream.

    Attributes:
        protocol: the protocol name.
        version: the negotiated version.
        server_versions: every version the server speaks, oldest first.
        kinds: the event kinds of the negotiated version.
        features: the enabled features (requested by the client and offered by the server).
    """

    protocol: str
    version: str
    server_versions: tuple[str, ...]
    kinds: tuple[str, ...]
    features: frozenset[str]

    def to_json(self) -> dict[str, Any]:
        """The handshake as a JSON-ready dict."""
        return {
            "protocol": self.protocol,
            "version": self.version,
            "server_versions": list(self.server_versions),
            "kinds": list(self.kinds),
            "features": sorted(self.features),
        }

    def event(self, *, retry: int | None = None) -> ServerSentEvent:
        """The handshake as an SSE event, with no ``id`` so Last-Event-ID is left alone."""
        return ServerSentEvent.json(self.to_json(), event=HANDSHAKE_EVENT, retry=retry)

    @classmethod
    def from_message(cls, message: MessageEvent) -> Handshake:
        """Parse a received handshake event.

        Raises:
            SchemaValidationError: the event is not a well-formed handshake.
        """
        if message.event != HANDSHAKE_EVENT:
            raise SchemaValidationError(HANDSHAKE_EVENT, f"event type is {message.event!r}")
        value = parse_json(HANDSHAKE_EVENT, message.data)
        try:
            return cls(
                protocol=_str(value["protocol"]),
                version=_str(value["version"]),
                server_versions=tuple(_str(v) for v in value["server_versions"]),
                kinds=tuple(_str(k) for k in value["kinds"]),
                features=frozenset(_str(f) for f in value["features"]),
            )
        except (KeyError, TypeError) as exc:
            raise SchemaValidationError(HANDSHAKE_EVENT, f"malformed handshake: {exc!r}") from None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return value


class Negotiated:
    """The outcome of a negotiation: one protocol, one version, a set of enabled features.

    Encode events through it so a kind that does not exist in the negotiated version is refused.

    Attributes:
        protocol: the chosen protocol.
        version: the chosen version.
        features: the enabled features.
        wants: what the client asked for.
    """

    __slots__ = ("features", "protocol", "version", "wants")

    def __init__(
        self,
        protocol: EventProtocol,
        version: str,
        features: frozenset[str],
        wants: ClientWants,
    ) -> None:
        self.protocol = protocol
        self.version = version
        self.features = features
        self.wants = wants

    def enabled(self, feature: str) -> bool:
        """Whether ``feature`` is enabled for this stream."""
        return feature in self.features

    @property
    def batching(self) -> bool:
        """Whether the client asked for, and the server offers, the ``batching`` feature."""
        return "batching" in self.features

    def kinds(self) -> list[EventKind[Any]]:
        """The event kinds of the negotiated version."""
        return self.protocol.kinds(self.version)

    def batchable_kinds(self) -> frozenset[str]:
        """Names of the negotiated version's kinds declared ``batchable``."""
        return frozenset(k.name for k in self.kinds() if k.batchable)

    def handshake(self) -> Handshake:
        """The handshake describing this negotiation."""
        return Handshake(
            protocol=self.protocol.name,
            version=self.version,
            server_versions=self.protocol.versions,
            kinds=tuple(k.name for k in self.kinds()),
            features=self.features,
        )

    def handshake_event(self, *, retry: int | None = None) -> ServerSentEvent:
        """The handshake event to send first on the stream."""
        return self.handshake().event(retry=retry)

    def encode(
        self,
        kind: str | EventKind[Any],
        payload: Any,
        *,
        id: str | int | None = None,
        retry: int | None = None,
    ) -> ServerSentEvent:
        """Encode ``payload`` as ``kind``, which must exist in the negotiated version.

        Raises:
            SchemaValidationError: unknown kind in this version, or an invalid payload.
        """
        return self.protocol.encode(kind, payload, id=id, retry=retry, version=self.version)

    def __repr__(self) -> str:
        return (
            f"Negotiated({self.protocol.name!r}, version={self.version!r}, "
            f"features={sorted(self.features)})"
        )


class Negotiator:
    """Chooses a protocol, version and features for each request.

    Args:
        protocols: the protocols the server offers.
        default: the protocol used when the client names none (default: the first one).

    Raises:
        ConfigurationError: no protocols, duplicate names, or an unknown default.
    """

    def __init__(self, protocols: Iterable[EventProtocol], *, default: str | None = None) -> None:
        self._protocols: dict[str, EventProtocol] = {}
        for protocol in protocols:
            if protocol.name in self._protocols:
                raise ConfigurationError(f"protocol {protocol.name!r} is offered twice")
            self._protocols[protocol.name] = protocol
        if not self._protocols:
            raise ConfigurationError("a Negotiator needs at least one protocol")
        if default is None:
            default = next(iter(self._protocols))
        if default not in self._protocols:
            raise ConfigurationError(f"default protocol {default!r} is not offered")
        self.default = default

    @property
    def protocols(self) -> dict[str, EventProtocol]:
        """The offered protocols by name."""
        return dict(self._protocols)

    def available(self) -> dict[str, Any]:
        """What the server offers, as the JSON ``available`` member of errors."""
        return {
            "default": self.default,
            "protocols": [p.describe() for p in self._protocols.values()],
        }

    def negotiate(self, wants: ClientWants) -> Negotiated:
        """Pick the protocol, the newest common version and the common features.

        Raises:
            NegotiationError: unknown protocol, or no version in common; ``available`` says
                what the server offers.
        """
        name = wants.protocol or self.default
        protocol = self._protocols.get(name)
        if protocol is None:
            raise NegotiationError(f"unknown protocol {name!r}", self.available())
        if wants.versions:
            common = [v for v in protocol.versions if v in wants.versions]
            if not common:
                raise NegotiationError(
                    f"no common version for protocol {name!r}: server speaks "
                    f"{', '.join(protocol.versions)}",
                    self.available(),
                )
            version = common[-1]  # versions are declared oldest first
        else:
            version = protocol.latest
        return Negotiated(protocol, version, wants.features & protocol.features, wants)

    def negotiate_request(
        self, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> Negotiated:
        """Parse the wants of a request and negotiate (see :meth:`ClientWants.parse`).

        Raises:
            NegotiationError: malformed wants, unknown protocol or no common version.
        """
        try:
            wants = ClientWants.parse(headers, query)
        except NegotiationError as exc:
            raise NegotiationError(str(exc), self.available()) from None
        return self.negotiate(wants)
