"""schemathesis, with every check, against /openapi.json of a hub served in-process.

Two hubs: one without authentication, one with JWT (every request carries a token granting all
topics; schemathesis' ``ignored_auth`` check also sends none and a broken one and expects 401).
Every check, positive and negative data, 25 examples per operation, derandomized so that a run
is reproducible. Streams end by themselves: the hubs run with ``max_connection_age`` at 50 ms, so
``GET /events`` answers a complete, short stream (its events are checked against the
``StreamEvent`` schema), and a request timeout guards the channel listener streams, whose
listeners never exist here (their operations answer 404).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.types import Receive, Scope, Send

from ssehub.hub import HubSettings, create_app

SECRET = "s" * 40
EXAMPLES = 25

STREAMS_END = {"max_connection_age": 0.05}


def _token() -> str:
    claims = {"exp": int(time.time() + 3600), "sub": "schemathesis"}
    claims["ssehub"] = {"publish": ["*"], "subscribe": ["*"]}
    return jwt.encode(claims, SECRET, algorithm="HS256")


# schemathesis's own list of statuses that reject invalid data.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 415, 422, 428, 429, "5xx"]


def _config(bearer: str | None = None) -> Any:
    data: dict[str, Any] = {
        "request-timeout": 2,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        "checks": {
            "enabled": True,
            # The hub refuses a batch over max_batch with 413 (the body is too large for it):
            # as much a rejection of invalid data as a 400.
            "negative_data_rejection": {"expected-statuses": [*REJECTIONS, 413]},
        },
    }
    if bearer:
        # Tied to the document's bearer scheme, so schemathesis knows what to leave out or
        # break when it checks that the hub refuses requests without a valid credential.
        data["auth"] = {"openapi": {"bearer": {"bearer": bearer}}}
    return schemathesis.Config.from_dict(data)


class FreshHub:
    """A new hub for every lifespan: schemathesis runs one lifespan per test, and a hub's broker
    is entered only once."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.app = create_app(self.settings)
        await self.app(scope, receive, send)


NO_AUTH = FreshHub(HubSettings(**STREAMS_END))
WITH_JWT = FreshHub(HubSettings(auth="jwt", jwt_key=SECRET, **STREAMS_END))

no_auth = schemathesis.openapi.from_asgi("/openapi.json", NO_AUTH, config=_config())
with_jwt = schemathesis.openapi.from_asgi("/openapi.json", WITH_JWT, config=_config(_token()))

KNOWN_BUGS: dict[str, list[Any]] = {}

HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@no_auth.parametrize()
@HYPOTHESIS
def test_without_auth(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=KNOWN_BUGS.get(case.path, []))


@with_jwt.parametrize()
@HYPOTHESIS
def test_with_jwt(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=KNOWN_BUGS.get(case.path, []))
