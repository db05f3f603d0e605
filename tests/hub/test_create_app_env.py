"""``create_app()`` without settings reads ``SSEHUB_*`` like ``ssehub serve`` (any ASGI server)."""

from __future__ import annotations

import logging
import os
import time

import jwt
import pytest

from ssehub import ConfigurationError
from ssehub.hub import HubSettings, create_app

from .conftest import client_for, running_hub

pytestmark = pytest.mark.anyio

SECRET = "s" * 40  # an HS256 secret of the required length
EVENT = {"topic": "orders/1", "data": "x"}


def _bearer(publish: list[str]) -> dict[str, str]:
    claims = {"exp": int(time.time()) + 3600, "sub": "tester", "ssehub": {"publish": publish}}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_auth_from_the_environment_refuses_anonymous_publishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSEHUB_AUTH", "jwt")
    monkeypatch.setenv("SSEHUB_JWT_KEY", SECRET)
    # running_hub() calls create_app() without settings, as `hypercorn 'ssehub.hub:create_app()'`
    async with running_hub() as app, client_for(app) as http:
        assert app.state.hub.settings.auth == "jwt"
        refused = await http.post("/publish", json=EVENT)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        granted = await http.post("/publish", json=EVENT, headers=_bearer(["orders/*"]))
        assert granted.status_code == 200


def test_an_invalid_variable_raises_the_message_serve_prints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSEHUB_MAX_BATCH", "many")
    with pytest.raises(ConfigurationError, match=r"^SSEHUB_MAX_BATCH: expected an integer"):
        create_app()


async def test_explicit_settings_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSEHUB_AUTH", "jwt")
    monkeypatch.setenv("SSEHUB_JWT_KEY", SECRET)
    monkeypatch.setenv("SSEHUB_MAX_BATCH", "many")  # not even read: no error
    settings = HubSettings(max_batch=7)
    async with running_hub(settings) as app, client_for(app) as http:
        assert app.state.hub.settings is settings
        response = await http.post("/publish", json=EVENT)  # auth stays off
        assert response.status_code == 200


def test_unknown_variables_are_logged_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in list(os.environ):
        if name.startswith("SSEHUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SSEHUB_JWT_KEYS", SECRET)
    monkeypatch.setenv("SSEHUB_SOMETHING_ELSE", "1")
    monkeypatch.setenv("SSEHUB_TOKEN", "for the client")
    caplog.set_level(logging.WARNING, logger="ssehub.hub")
    create_app()
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "ssehub.hub",
            logging.WARNING,
            (
                "SSEHUB_JWT_KEYS is not an ssehub setting and is ignored "
                "(did you mean SSEHUB_JWT_KEY?)"
            ),
        ),
        (
            "ssehub.hub",
            logging.WARNING,
            "SSEHUB_SOMETHING_ELSE is not an ssehub setting and is ignored",
        ),
    ]


def test_settings_given_in_python_read_no_variables(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSEHUB_AUHT", "jwt")
    caplog.set_level(logging.WARNING, logger="ssehub.hub")
    create_app(HubSettings())
    assert caplog.records == []


def test_the_client_variables_are_the_ones_the_check_knows() -> None:
    from ssehub.client._hub import HUB_URL_ENV, TOKEN_ENV
    from ssehub.hub._settings_checks import _NOT_SETTINGS

    assert {HUB_URL_ENV, TOKEN_ENV} == _NOT_SETTINGS
