"""Helpers for the Mercure tests: tokens with the ``mercure`` claim, settings, a form publish.

Shared by the ASGI-level tests (``tests/hub/test_mercure*.py``) and the tests that run real
``ssehub serve --mercure`` processes (``tests/integration/test_mercure_*.py``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from ssehub.hub import HubSettings

PUBLISHER_KEY = "p" * 40
"""The HS256 key of publishers' tokens in these tests."""

SUBSCRIBER_KEY = "q" * 40
"""The HS256 key of subscribers' tokens."""

HUB = "/.well-known/mercure"


def mercure_token(
    publish: list[str] | None = None,
    subscribe: list[str] | None = None,
    *,
    key: Any = PUBLISHER_KEY,
    algorithm: str = "HS256",
    lifetime: float | None = 3600,
    payload: Any = None,
    **claims: Any,
) -> str:
    """A token whose ``mercure`` claim grants ``publish`` and ``subscribe`` selectors."""
    grants: dict[str, Any] = {}
    if publish is not None:
        grants["publish"] = publish
    if subscribe is not None:
        grants["subscribe"] = subscribe
    if payload is not None:
        grants["payload"] = payload
    body: dict[str, Any] = {"mercure": grants, **claims}
    if lifetime is not None:
        body["exp"] = int(time.time() + lifetime)
    return jwt.encode(body, key, algorithm=algorithm)


def publisher(publish: list[str] | None = None) -> str:
    """A publisher's token (every topic by default)."""
    return mercure_token(["*"] if publish is None else publish)


def subscriber(subscribe: list[str]) -> str:
    """A subscriber's token granting private updates of ``subscribe``."""
    return mercure_token(subscribe=subscribe, key=SUBSCRIBER_KEY)


def mercure_settings(**changes: Any) -> HubSettings:
    """Settings of a Mercure hub with separate publisher and subscriber keys."""
    values: dict[str, Any] = {
        "mercure": True,
        "mercure_publisher_jwt_key": PUBLISHER_KEY,
        "mercure_subscriber_jwt_key": SUBSCRIBER_KEY,
        **changes,
    }
    return HubSettings(**values)


def mercure_env() -> dict[str, str]:
    """The environment of a ``ssehub serve --mercure`` process with the keys above."""
    return {
        "MERCURE_PUBLISHER_JWT_KEY": PUBLISHER_KEY,
        "MERCURE_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY,
    }


async def post_update(
    client: httpx.AsyncClient,
    fields: list[tuple[str, str]] | dict[str, str],
    *,
    token: str | None = None,
    url: str = HUB,
) -> httpx.Response:
    """POST a publish form (``token``: a publisher's; ``None`` sends none)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post(url, content=urlencode(fields), headers=headers)
