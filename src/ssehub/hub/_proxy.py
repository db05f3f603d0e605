"""Client addresses behind reverse proxies: forwarding headers count only from trusted peers.

Anyone can send ``X-Forwarded-For``; believing it from any peer would let a client pick the
address that per-address limits count against. So the hub starts from the TCP peer address and
walks ``X-Forwarded-For`` (or RFC 7239 ``Forwarded: for=``) from the right, past addresses of
configured proxies only; the first address that is not a trusted proxy is the client. The
scheme (for the same-origin check of cookie-authenticated requests) is taken from
``X-Forwarded-Proto`` under the same condition.

The result is stored in ``scope["ssehub.client_address"]`` and ``scope["ssehub.scheme"]``;
``ssehub serve`` turns uvicorn's own proxy-header handling off so this is the only place that
decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ADDRESS_SCOPE_KEY",
    "SCHEME_SCOPE_KEY",
    "ForwardedMiddleware",
    "client_address",
    "parse_networks",
]

ADDRESS_SCOPE_KEY: Final = "ssehub.client_address"
SCHEME_SCOPE_KEY: Final = "ssehub.scheme"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse addresses and CIDR blocks (``10.0.0.0/8``, ``::1``).

    Raises:
        ValueError: a value is neither.
    """
    return tuple(_parse_network(value) for value in values)


def _parse_network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {value.strip()[:64]!r}") from None


def _parse_address(text: str) -> str | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _forwarded_for(header: str) -> list[str]:
    addresses = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                addresses.append(value)
    return addresses


def client_address(scope: Scope) -> str | None:
    """Return the client's address as decided by :class:`ForwardedMiddleware`, else the peer's.

    Args:
        scope: the ASGI scope.
    """
    address = scope.get(ADDRESS_SCOPE_KEY)
    if isinstance(address, str):
        return address
    client = scope.get("client")
    return str(client[0]) if client else None


class ForwardedMiddleware:
    """Decide each request's client address (and scheme), trusting only configured proxies.

    Args:
        app: the wrapped app.
        trusted: the proxies' addresses or networks.
    """

    def __init__(self, app: ASGIApp, *, trusted: Iterable[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _is_trusted(self, address: str | None) -> bool:
        if address is None:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            self.resolve(scope)
        await self.app(scope, receive, send)

    def resolve(self, scope: Scope) -> None:
        """Record the client's address (and scheme) in ``scope`` when a trusted proxy sent it.

        Also called directly by the hub's ``GET /events`` dispatcher (``hub/_dispatch.py``).
        """
        client = scope.get("client")
        peer = _parse_address(str(client[0])) if client else None
        address = peer
        if self._is_trusted(peer):
            forwarded_for = forwarded = proto = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for = value.decode("latin-1")
                elif name == b"forwarded":
                    forwarded = value.decode("latin-1")
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").split(",")[-1].strip().lower()
            if forwarded_for is not None:
                chain = forwarded_for.split(",")
            elif forwarded is not None:
                chain = _forwarded_for(forwarded)
            else:
                chain = []
            for hop in reversed(chain):
                parsed = _parse_address(hop)
                if parsed is None:
                    break  # garbage or an obfuscated id: stop at the last address we trust
                address = parsed
                if not self._is_trusted(parsed):
                    break
            if proto in {"http", "https"}:
                scope[SCHEME_SCOPE_KEY] = proto
        # Stored only when it differs from the peer's, which client_address() falls back to:
        # every scope key more can make the scope dict grow a size (~0.8 KiB for the life of
        # an event stream).
        if address is not None and (client is None or address != str(client[0])):
            scope[ADDRESS_SCOPE_KEY] = address
