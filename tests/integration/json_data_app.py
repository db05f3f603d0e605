"""An app whose generators yield structured data, served by ``test_json_data_served.py``.

``/json`` yields a dict's ``data`` that is a dict, a list, a dataclass and a pydantic model, then
ends. ``/unserialisable`` yields one good event, waits until ``/release`` is requested (so the
stream is idle, every byte so far sent), then yields data with no JSON form: the error must reach
the server's log and the client must not see a clean end of the body (which would tell a browser
to reconnect into the same error forever, with nothing in the page to say why).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ssehub import EventSourceResponse


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(BaseModel):
    name: str
    tags: list[str]


class NoJSON:
    """Not JSON-serialisable: a plain object."""


released = anyio.Event()


async def json_data(request: Request) -> Response:
    async def events() -> AsyncIterator[Any]:
        yield {"data": {"a": 1}, "event": "dict", "id": 1}
        yield {"data": [1, "two"], "event": "list", "id": 2}
        yield {"data": Point(3, 4), "event": "dataclass", "id": 3}
        yield {"data": User(name="ann", tags=["x"]), "event": "model", "id": 4}

    return EventSourceResponse(events())


async def unserialisable(request: Request) -> Response:
    async def events() -> AsyncIterator[Any]:
        yield {"data": "first", "id": 1}
        await released.wait()
        yield {"data": {"thing": NoJSON()}, "id": 2}

    return EventSourceResponse(events())


async def release(request: Request) -> Response:
    released.set()
    return JSONResponse({"released": True})


app = Starlette(
    routes=[
        Route("/json", json_data),
        Route("/unserialisable", unserialisable),
        Route("/release", release),
    ]
)
