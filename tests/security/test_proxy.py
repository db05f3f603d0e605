"""Forwarded addresses are believed only from configured proxies."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest

from ssehub.hub import HubSettings
from ssehub.hub._proxy import ForwardedMiddleware, client_address, parse_networks
from ssehub.testing import http_scope, stream_asgi

from .support import running_hub

pytestmark = pytest.mark.anyio


async def _resolve(trusted: list[str], peer: str, **headers: str) -> tuple[str | None, str | None]:
    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.update(scope)

    middleware = ForwardedMiddleware(app, trusted=parse_networks(trusted))  # type: ignore[arg-type]
    await middleware(http_scope("/", headers=headers, client=(peer, 1)), None, None)  # type: ignore[arg-type]
    return client_address(seen), seen.get("ssehub.scheme")  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("trusted", "peer", "headers", "expected"),
    [
        ([], "203.0.113.5", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.5"),
        (["10.0.0.0/8"], "10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, "1.2.3.4"),
        # A client-supplied first hop is skipped: the rightmost untrusted address wins.
        (["10.0.0.0/8"], "10.0.0.2", {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.9"}, "1.2.3.4"),
        (
            ["10.0.0.2"],
            "10.0.0.2",
            {"forwarded": 'for="[2001:db8::1]:4711";proto=https'},
            "2001:db8::1",
        ),
        (["10.0.0.2"], "10.0.0.2", {"x-forwarded-for": "garbage"}, "10.0.0.2"),
        (["::1"], "::1", {}, "::1"),
    ],
)
async def test_client_address(
    trusted: list[str], peer: str, headers: dict[str, str], expected: str
) -> None:
    address, _ = await _resolve(trusted, peer, **headers)
    assert address == expected


async def test_scheme_only_from_trusted_proxies() -> None:
    assert (await _resolve([], "1.1.1.1", **{"x-forwarded-proto": "https"}))[1] is None
    assert (await _resolve(["1.1.1.1"], "1.1.1.1", **{"x-forwarded-proto": "https"}))[1] == "https"


async def test_spoofed_forwarded_for_cannot_dodge_the_per_address_limit() -> None:
    async with running_hub(HubSettings(max_connections_per_address=1)) as app:
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                first = http_scope("/events", query_string="topic=t", client=("203.0.113.5", 1))
                stream = await stack.enter_async_context(stream_asgi(app, scope=first))
                await stream.start()
                spoofed = http_scope(
                    "/events",
                    query_string="topic=t",
                    headers={"x-forwarded-for": "9.9.9.9"},
                    client=("203.0.113.5", 2),
                )
                async with stream_asgi(app, scope=spoofed) as refused:
                    await refused.start()
                    assert refused.status_code == 429


async def test_trusted_proxy_clients_are_counted_separately() -> None:
    settings = HubSettings(max_connections_per_address=1, trusted_proxies=("127.0.0.1",))
    async with running_hub(settings) as app:
        with anyio.fail_after(5):
            async with AsyncExitStack() as stack:
                for client in ("1.1.1.1", "2.2.2.2"):
                    scope = http_scope(
                        "/events", query_string="topic=t", headers={"x-forwarded-for": client}
                    )
                    stream = await stack.enter_async_context(stream_asgi(app, scope=scope))
                    await stream.start()
                    assert stream.status_code == 200


def test_invalid_proxy_setting() -> None:
    from ssehub._exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        HubSettings(trusted_proxies=("not-an-ip",))
