"""The hub app under uvicorn, bare or behind a pass-through ASGI middleware (a benchmark server).

``bench_hub_fanout.py --middleware`` runs this twice in one run, with and without ``--wrap``:
the only difference is one middleware that wraps ``send`` (as Sentry, OpenTelemetry or a
request logger do) and passes every message on unchanged. Settings are the hub's defaults from
``SSEHUB_*`` (the harness lifts the per-address stream limits), uvicorn runs as ``ssehub
serve`` runs it: uvloop, httptools, no access log, the same garbage-collector threshold.

Run: ``python benchmarks/_hub_app_server.py --port N [--wrap]``.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssehub.cli.serve import tune_garbage_collector
from ssehub.hub import HubSettings, create_app


class PassThrough:
    """An ASGI middleware that wraps ``send`` and changes nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped_send(message: Message) -> None:
            await send(message)

        await self.app(scope, receive, wrapped_send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--wrap", action="store_true", help="behind a pass-through middleware")
    args = parser.parse_args()
    settings = HubSettings.from_environment()
    tune_garbage_collector(settings.gc_threshold)
    app = create_app(settings)
    uvicorn.run(
        PassThrough(app) if args.wrap else app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
