"""Reading a bounded request body: :func:`read_body`.

Every route that takes a body (``POST /publish``, Mercure's publish, the channel routes) reads
it here, within the hub's ``max_body_size``. Its own module, importing only the error type, so
any route module can use it without an import cycle.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

from ._errors import HubHTTPError

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it is known to exceed ``limit`` bytes.

    ``Content-Length`` is checked before reading anything; the byte count is checked while
    streaming (chunked bodies have no length), so at most ``limit`` plus one chunk is held.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise HubHTTPError("invalid_body", "Content-Length is not a number") from None
        if length > limit:
            raise HubHTTPError("body_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # aclosing: leaving the loop early must close the generator here, not in the garbage
    # collector (trio refuses to finalise async generators that way).
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise HubHTTPError("body_too_large", f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)
