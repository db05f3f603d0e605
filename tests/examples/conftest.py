"""Helpers for the example tests: import an example by path, run an app's lifespan."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from starlette.types import ASGIApp, Message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a fresh module (no state shared between tests)."""
    path = EXAMPLES / f"{name}.py"
    module_name = f"_ssehub_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example() -> Any:
    """Return the example loader (as a fixture, so tests need no imports from conftest)."""
    return load_example


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[dict[str, Any]]:
    """Run ``app``'s ASGI lifespan: startup on enter, shutdown on exit; yields the state dict.

    Pass the state to request scopes (``http_scope(..., state=dict(state))``) as servers do.
    """
    state: dict[str, Any] = {}
    to_app_send, to_app = anyio.create_memory_object_stream[Message](4)
    from_app_send, from_app = anyio.create_memory_object_stream[Message](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    async with anyio.create_task_group() as tg, to_app_send, to_app, from_app_send, from_app:
        tg.start_soon(app, scope, to_app.receive, from_app_send.send)
        await to_app_send.send({"type": "lifespan.startup"})
        message = await from_app.receive()
        assert message["type"] == "lifespan.startup.complete", message
        try:
            yield state
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(5):
                await to_app_send.send({"type": "lifespan.shutdown"})
                message = await from_app.receive()
            assert message["type"] == "lifespan.shutdown.complete", message


@pytest.fixture
def run_lifespan() -> Any:
    """Return the :func:`lifespan` context manager factory."""
    return lifespan
