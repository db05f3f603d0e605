"""Fixtures for the hub tests: a running hub app, an httpx client for it, stream helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ssehub.broker import Broker
from ssehub.hub import HubSettings, HubState, create_app
from ssehub.testing import ASGIStream, http_scope, stream_asgi


@asynccontextmanager
async def running_hub(
    settings: HubSettings | None = None, *, broker: Broker | None = None
) -> AsyncIterator[Starlette]:
    """Build the hub app and run its lifespan (httpx's ASGITransport does not)."""
    app = create_app(settings, broker=broker)
    async with app.router.lifespan_context(app):
        yield app


def hub_of(app: Starlette) -> HubState:
    """The app's HubState."""
    state: HubState = app.state.hub
    return state


def client_for(app: Starlette) -> httpx.AsyncClient:
    """An httpx client that calls ``app`` directly (fine for non-streaming endpoints)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


def open_events(
    app: Starlette,
    query: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """``stream_asgi`` on ``GET /events?<query>``: an async context manager of ASGIStream."""
    scope = http_scope("/events", query_string=query, headers=headers or {})
    return stream_asgi(app, scope=scope, **kwargs)


@pytest.fixture
async def hub_app() -> AsyncIterator[Starlette]:
    """A running hub with default settings."""
    async with running_hub() as app:
        yield app


@pytest.fixture
async def client(hub_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for :func:`hub_app`."""
    async with client_for(hub_app) as http:
        yield http


__all__ = ["ASGIStream", "client_for", "hub_of", "open_events", "running_hub"]
