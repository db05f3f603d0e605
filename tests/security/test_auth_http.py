"""Authentication and authorization over HTTP: every refusal is JSON and publishes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from ssehub.hub import HubSettings
from ssehub.testing import http_scope, stream_asgi

from .support import (
    SECRET,
    assert_error,
    bearer,
    client_for,
    history_size,
    jwt_settings,
    public_pem,
    rsa_key,
    running_hub,
    token,
)
from .test_tokens import _forge_hs256

pytestmark = pytest.mark.anyio

EVENT = {"topic": "orders/1", "data": "x"}


async def test_publish_with_a_granted_token_returns_the_id() -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        response = await http.post("/publish", json=EVENT, headers=bearer(token(["orders/*"])))
        assert response.status_code == 200
        assert response.json()["id"]
        assert await history_size(app, "orders/1") == 1


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        (bearer("not-a-token"), "invalid_token"),
        (bearer(token(["*"], lifetime=-60)), "invalid_token"),
        (bearer(token(["*"], key="k" * 40)), "invalid_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
        ({"Authorization": "Bearer "}, "invalid_token"),
    ],
)
async def test_publish_without_a_valid_token_is_401(headers: dict[str, str], code: str) -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        response = await http.post("/publish", json=EVENT, headers=headers)
        assert_error(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await history_size(app, "orders/1") == 0


async def test_wrong_audience_and_algorithm_confusion_are_401() -> None:
    pem = public_pem(rsa_key())
    settings = HubSettings(auth="jwt", jwt_algorithm="RS256", jwt_key=pem, jwt_audience="hub")
    forged = _forge_hs256({"exp": 2**40, "aud": "hub", "ssehub": {"publish": ["*"]}}, pem.encode())
    wrong_aud = token(["*"], key=rsa_key(), algorithm="RS256", aud="other")
    good = token(["*"], key=rsa_key(), algorithm="RS256", aud="hub")
    async with running_hub(settings) as app, client_for(app) as http:
        for bad in (forged, wrong_aud):
            assert_error(
                await http.post("/publish", json=EVENT, headers=bearer(bad)), 401, "invalid_token"
            )
        assert await history_size(app, "orders/1") == 0
        assert (await http.post("/publish", json=EVENT, headers=bearer(good))).status_code == 200


async def test_publish_to_a_topic_not_granted_is_403_and_a_batch_publishes_nothing() -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        credential = bearer(token(["orders/*"]))
        response = await http.post(
            "/publish", json={"topic": "users/1", "data": "x"}, headers=credential
        )
        assert_error(response, 403, "forbidden")
        batch = [EVENT, {"topics": ["orders/2", "admin"], "data": "y"}]
        response = await http.post("/publish", json=batch, headers=credential)
        assert_error(response, 403, "forbidden")
        assert response.json()["detail"].startswith("events[1]: ")
        assert await history_size(app, "orders/1") == 0
        assert await history_size(app, "orders/2") == 0


async def test_subscribe_needs_a_token_and_a_grant() -> None:
    async with running_hub(jwt_settings()) as app:
        cases = [
            ({}, 401, "unauthorized"),
            (bearer(token(subscribe=["a"])), 403, "forbidden"),
            (bearer("garbage"), 401, "invalid_token"),
        ]
        for headers, status, code in cases:
            async with stream_asgi(app, "/events?topic=b", headers=headers) as stream:
                await stream.start()
                assert stream.status_code == status
                body = json.loads(await stream.read_all())
                assert body["error"] == code
        assert app.state.hub.broker.statistics().subscribers == 0


async def test_anonymous_subscribe_allows_public_reads_only() -> None:
    settings = jwt_settings(anonymous_subscribe=True)
    async with (
        running_hub(settings) as app,
        client_for(app) as http,
        stream_asgi(app, "/events?topic=news") as stream,
    ):
        await stream.start()
        assert stream.status_code == 200
        # Anonymous requests still may not publish.
        assert_error(await http.post("/publish", json=EVENT), 401, "unauthorized")


async def test_status_needs_a_credential_when_auth_is_on() -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        assert_error(await http.get("/status"), 401, "unauthorized")
        assert (await http.get("/status", headers=bearer(token()))).status_code == 200
        # Health checks carry no credential and keep working.
        assert (await http.get("/health")).status_code == 200


async def test_api_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# server keys\nall-topics-key-0123456789\nscoped-key-0123456789 orders/*\n")
    settings = HubSettings(auth="api_key", api_keys_file=str(keys))
    async with running_hub(settings) as app, client_for(app) as http:
        ok = await http.post("/publish", json=EVENT, headers=bearer("all-topics-key-0123456789"))
        assert ok.status_code == 200
        scoped = bearer("scoped-key-0123456789")
        assert (await http.post("/publish", json=EVENT, headers=scoped)).status_code == 200
        response = await http.post("/publish", json={"topic": "x", "data": 1}, headers=scoped)
        assert_error(response, 403, "forbidden")
        response = await http.post("/publish", json=EVENT, headers=bearer("wrong-key-0123456789"))
        assert_error(response, 401, "invalid_token")


async def test_jwt_hub_also_accepts_api_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("server-key-0123456789abcdef\n")
    async with running_hub(jwt_settings(api_keys_file=str(keys))) as app, client_for(app) as http:
        response = await http.post(
            "/publish", json=EVENT, headers=bearer("server-key-0123456789abcdef")
        )
        assert response.status_code == 200


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"ssehub_token={value}"}


@pytest.mark.parametrize(
    ("origin", "status"),
    [(None, 403), ("https://evil.example", 403), ("http://hub", 200), ("https://app.example", 200)],
)
async def test_cookie_authenticated_publish_checks_the_origin(
    origin: str | None, status: int
) -> None:
    settings = jwt_settings(cors_origins=("https://app.example",))
    headers = _cookie(token(["*"]))
    if origin is not None:
        headers["Origin"] = origin
    async with running_hub(settings) as app, client_for(app) as http:
        response = await http.post("/publish", json=EVENT, headers=headers)
        if status == 403:
            assert_error(response, 403, "forbidden_origin")
            assert await history_size(app, "orders/1") == 0
        else:
            assert response.status_code == 200


async def test_cookie_subscribe_works_for_a_browser() -> None:
    async with running_hub(jwt_settings()) as app:
        headers = _cookie(token(subscribe=["feed"]))
        async with stream_asgi(app, "/events?topic=feed", headers=headers) as stream:
            await stream.start()
            assert stream.status_code == 200


async def test_query_token_is_off_by_default_and_works_when_enabled() -> None:
    credential = token(subscribe=["feed"])
    for enabled, status in ((False, 401), (True, 200)):
        async with running_hub(jwt_settings(auth_query_token=enabled)) as app:
            scope = http_scope("/events", query_string=f"topic=feed&token={credential}")
            async with stream_asgi(app, scope=scope) as stream:
                await stream.start()
                assert stream.status_code == status


async def test_auth_off_is_open_but_refuses_private_events() -> None:
    async with running_hub() as app, client_for(app) as http:
        assert (await http.post("/publish", json=EVENT)).status_code == 200
        response = await http.post("/publish", json={**EVENT, "private": True})
        assert_error(response, 400, "private_without_auth")
        assert await history_size(app, "orders/1") == 1


async def test_non_boolean_private_is_400() -> None:
    async with running_hub(jwt_settings()) as app, client_for(app) as http:
        response = await http.post(
            "/publish", json={**EVENT, "private": "yes"}, headers=bearer(token(["*"]))
        )
        assert_error(response, 400, "invalid_body")
        with anyio.fail_after(5):
            assert await history_size(app, "orders/1") == 0


def test_secret_is_long_enough_for_the_tests() -> None:
    assert len(SECRET) >= 32
