"""FastAPI integration: an SSE endpoint with typed pydantic events and protocol negotiation.

* ``GET /prices?count=10&interval=1`` streams ``price`` events (a pydantic model) after a
  handshake. Clients state the protocol version with ``X-Protocol-Version`` (or
  ``?protocol_version=`` from a browser); an unsupported version gets a 406 with a JSON body
  listing the versions (or, for browsers, a ``protocol.error`` event) from one exception handler.
* ``GET /health`` is an ordinary JSON endpoint next to it.

``EventSourceResponse`` is a Starlette ``Response``, so FastAPI returns it as is; declare
``response_class=EventSourceResponse`` so the OpenAPI schema shows ``text/event-stream``.

Run it: ``uv run python examples/fastapi_app.py``, then
``curl -N 'http://127.0.0.1:8000/prices?count=5'`` (OpenAPI docs at ``/docs``).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ssehub import EventSourceResponse, NegotiationError, ServerSentEvent
from ssehub.protocols import EventProtocol, Negotiated, Negotiator, negotiation_error_response

__all__ = ["PRICES", "PriceTick", "app", "main"]


class PriceTick(BaseModel):
    """One price update."""

    symbol: str = Field(min_length=1, max_length=12)
    price: float = Field(gt=0)
    sequence: int = Field(ge=1)


PRICES = EventProtocol("prices", ["1"], description="price ticks")
PRICE = PRICES.kind("price", PriceTick)
negotiator = Negotiator([PRICES])

app = FastAPI(title="ssehub FastAPI example")


@app.exception_handler(NegotiationError)
async def negotiation_failed(request: Request, exc: NegotiationError) -> Response:
    # 406 JSON for API clients; a 200 protocol.error event for browsers (see docs/protocols.md).
    return negotiation_error_response(exc, request)


def negotiated(request: Request) -> Negotiated:
    """A FastAPI dependency: the negotiated protocol session of this request."""
    return negotiator.negotiate_request(request.headers, request.query_params)


@app.get("/prices", response_class=EventSourceResponse)
async def prices(
    session: Annotated[Negotiated, Depends(negotiated)],
    symbol: Annotated[str, Query(min_length=1, max_length=12)] = "ACME",
    count: Annotated[int, Query(ge=1, le=1000)] = 10,
    interval: Annotated[float, Query(ge=0, le=60)] = 1.0,
) -> EventSourceResponse:
    """Stream ``count`` price ticks for ``symbol``, ``interval`` seconds apart."""

    async def ticks() -> AsyncIterator[ServerSentEvent]:
        yield session.handshake_event()
        price = 100.0
        for n in range(1, count + 1):
            price = round(price * (1.01 if n % 3 else 0.98), 2)  # deterministic "market"
            yield session.encode(PRICE, PriceTick(symbol=symbol, price=price, sequence=n), id=n)
            await anyio.sleep(interval)

    return EventSourceResponse(ticks())


@app.get("/health")
async def health() -> dict[str, str]:
    """A plain JSON endpoint next to the stream."""
    return {"status": "ok"}


def main(argv: list[str] | None = None) -> None:
    """Serve the example with uvicorn (127.0.0.1:8000 unless told otherwise)."""
    parser = argparse.ArgumentParser(description="ssehub FastAPI example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
