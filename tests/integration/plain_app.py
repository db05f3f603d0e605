"""The library's most common use: a plain Starlette app returning ``EventSourceResponse``.

Served by the exact command a user would type, from the project root:
``uvicorn tests.integration.plain_app:app`` (``test_servers.py`` also runs it under hypercorn and
granian). Nothing here knows about shutdown: no lifespan, no ``shutdown_event``, default settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from ssehub import EventSourceResponse


async def events(request: Request) -> EventSourceResponse:
    async def gen() -> AsyncIterator[dict[str, object]]:
        n = 0
        while True:
            n += 1
            yield {"data": f"tick {n}", "id": str(n)}
            await anyio.sleep(1)

    return EventSourceResponse(gen())


app = Starlette(routes=[Route("/events", events)])
