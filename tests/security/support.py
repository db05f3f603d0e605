"""Helpers for the security tests: keys, tokens, a running hub, request shortcuts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette

from ssehub.broker import Broker
from ssehub.hub import HubSettings, HubState, create_app

SECRET = "s" * 40
"""An HS256 secret of the required length."""


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def token(
    publish: list[str] | None = None,
    subscribe: list[str] | None = None,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    lifetime: float = 3600,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed token granting ``publish`` and ``subscribe`` patterns."""
    payload: dict[str, Any] = {"exp": int(time.time() + lifetime), "sub": "tester"}
    grants: dict[str, list[str]] = {}
    if publish is not None:
        grants["publish"] = publish
    if subscribe is not None:
        grants["subscribe"] = subscribe
    payload["ssehub"] = grants
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def jwt_settings(**changes: Any) -> HubSettings:
    return HubSettings(auth="jwt", jwt_key=SECRET, **changes)


@asynccontextmanager
async def running_hub(
    settings: HubSettings | None = None, *, broker: Broker | None = None
) -> AsyncIterator[Starlette]:
    """Build the hub app and run its lifespan."""
    app = create_app(settings, broker=broker)
    async with app.router.lifespan_context(app):
        yield app


def hub_of(app: Starlette) -> HubState:
    state: HubState = app.state.hub
    return state


def client_for(app: Starlette) -> httpx.AsyncClient:
    """An httpx client calling ``app`` directly (non-streaming endpoints only)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


async def history_size(app: Starlette, topic: str) -> int:
    sizes = await hub_of(app).broker.backend.history_sizes([topic])
    return sizes.get(topic, 0)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The hub's JSON error shape with the expected status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
