"""CORS (SSE-SPEC case 23): exact origins with credentials, '*' without, preflights."""

from __future__ import annotations

import pytest

from ssehub.hub import HubSettings
from ssehub.testing import stream_asgi

from .support import assert_error, client_for, running_hub

pytestmark = pytest.mark.anyio

ALLOWED = "https://app.example"


async def test_whitelisted_origin_gets_its_origin_and_credentials() -> None:
    async with (
        running_hub(HubSettings(cors_origins=(ALLOWED,))) as app,
        stream_asgi(app, "/events?topic=t", headers={"Origin": ALLOWED}) as stream,
    ):
        await stream.start()
        assert stream.status_code == 200
        assert stream.headers["access-control-allow-origin"] == ALLOWED
        assert stream.headers["access-control-allow-credentials"] == "true"
        assert "origin" in stream.headers["vary"].lower()
        assert "SSEHub-Reset" in stream.headers["access-control-expose-headers"]


async def test_other_origins_get_no_cors_headers() -> None:
    headers = {"Origin": "https://evil.example"}
    async with (
        running_hub(HubSettings(cors_origins=(ALLOWED,))) as app,
        stream_asgi(app, "/events?topic=t", headers=headers) as stream,
    ):
        await stream.start()
        assert "access-control-allow-origin" not in stream.headers
        assert "access-control-allow-credentials" not in stream.headers


async def test_wildcard_never_allows_credentials() -> None:
    async with running_hub(HubSettings(cors_origins=("*",))) as app, client_for(app) as http:
        response = await http.get("/health", headers={"Origin": "https://any.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


async def test_preflight_allows_last_event_id_and_authorization() -> None:
    async with running_hub(HubSettings(cors_origins=(ALLOWED,))) as app, client_for(app) as http:
        response = await http.options(
            "/events",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id, Authorization",
            },
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == ALLOWED
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "last-event-id" in allowed
        assert "authorization" in allowed
        assert "GET" in response.headers["access-control-allow-methods"]
        assert int(response.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example", "GET", "last-event-id"),
        (ALLOWED, "DELETE", ""),
        (ALLOWED, "POST", "x-custom"),
    ],
)
async def test_refused_preflights_are_403_json(origin: str, method: str, headers: str) -> None:
    async with running_hub(HubSettings(cors_origins=(ALLOWED,))) as app, client_for(app) as http:
        response = await http.options(
            "/publish",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": headers,
            },
        )
        assert_error(response, 403, "origin_not_allowed")
        assert "access-control-allow-origin" not in response.headers


async def test_no_cors_configured_means_no_cors_headers() -> None:
    async with running_hub() as app, client_for(app) as http:
        response = await http.get("/health", headers={"Origin": ALLOWED})
        assert "access-control-allow-origin" not in response.headers
