"""Mercure's active subscriptions: subscription events and the subscriptions API.

draft-dunglas-mercure-07 §7 ("Active Subscriptions"), with ``--mercure-subscriptions``:

* When a Mercure subscription starts or ends, the hub publishes a **private** update whose
  topic is ``/.well-known/mercure/subscriptions/{topic}/{subscriber}`` (each variable
  percent-encoded once) and whose data is a JSON-LD document::

      {"@context": "https://mercure.rocks/", "id": "<the topic>", "type": "Subscription",
       "topic": "<selector>", "subscriber": "urn:uuid:...", "active": true,
       "payload": <the token's mercure.payload>}

  One update per selector of the subscription. Only subscribers whose token's ``subscribe``
  selectors match that topic receive it (``/.well-known/mercure/subscriptions/{topic}/{subscriber}``
  as a template grants them all).
* ``GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`` answers the active
  subscriptions (``application/ld+json``): a collection ``{"@context", "id", "type":
  "Subscriptions", "lastEventID", "subscriptions": [...]}``, or one subscription (404 when none
  matches). The caller needs a subscriber token whose ``subscribe`` selectors match the
  request's path. Responses carry ``Link: </.well-known/mercure>; rel="mercure"`` (§2).

The list is this process's subscriptions: with several hubs on one Redis, each lists the
streams it serves (subscription events, being updates, reach subscribers on every hub).
A subscription topic longer than ``max_topic_length`` is not published (logged at debug).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

import anyio
from starlette.responses import Response

from ..broker.transient import publish_transient
from ._mercure_auth import MercureAuth, MercureClaims, MercureError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import Receive, Scope, Send

    from ._state import HubState
    from ._stream import HubStream

__all__ = ["CONTEXT", "SUBSCRIPTIONS_PATH", "MercureSubscriptions", "subscription_topic"]

logger = logging.getLogger("ssehub.hub")

SUBSCRIPTIONS_PATH: Final = "/.well-known/mercure/subscriptions"
CONTEXT: Final = "https://mercure.rocks/"
_LINK: Final = '</.well-known/mercure>; rel="mercure"'


def subscription_topic(selector: str, subscriber: str) -> str:
    """The topic (and JSON-LD ``id``) of one subscription (§7, RFC 6570 expansion)."""
    return f"{SUBSCRIPTIONS_PATH}/{quote(selector, safe='')}/{quote(subscriber, safe='')}"


class _Subscriber:
    __slots__ = ("claims", "id", "selectors")

    def __init__(self, subscriber: str, selectors: Sequence[str], claims: MercureClaims) -> None:
        self.id = subscriber
        self.selectors = tuple(selectors)
        self.claims = claims

    def documents(self, topic: str | None = None, *, active: bool) -> list[dict[str, Any]]:
        documents = []
        for selector in self.selectors:
            if topic is not None and selector != topic:
                continue
            document: dict[str, Any] = {
                "id": subscription_topic(selector, self.id),
                "type": "Subscription",
                "topic": selector,
                "subscriber": self.id,
                "active": active,
            }
            if self.claims.payload is not None:
                document["payload"] = self.claims.payload
            documents.append(document)
        return documents


class _Tracked:
    """The stream of a tracked subscriber: announces its end when the stream ends."""

    __slots__ = ("_owner", "_stream", "_subscriber")

    def __init__(self, owner: MercureSubscriptions, stream: HubStream, who: _Subscriber) -> None:
        self._owner = owner
        self._stream = stream
        self._subscriber = who

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._owner._ended(self._subscriber)


class MercureSubscriptions:
    """This process's active Mercure subscriptions, their events and their API.

    Args:
        hub: the hub's state.
        auth: the Mercure token checks.
    """

    def __init__(self, hub: HubState, auth: MercureAuth) -> None:
        self.hub = hub
        self.auth = auth
        self._active: dict[str, _Subscriber] = {}

    async def track(
        self, stream: HubStream, selectors: Sequence[str], claims: MercureClaims
    ) -> _Tracked:
        """Record a new subscriber, announce it, and return its stream wrapped so that its end
        is announced too."""
        who = _Subscriber(f"urn:uuid:{uuid.uuid4()}", selectors, claims)
        self._active[who.id] = who
        await self._announce(who, active=True)
        return _Tracked(self, stream, who)

    async def _ended(self, who: _Subscriber) -> None:
        self._active.pop(who.id, None)
        await self._announce(who, active=False)

    async def _announce(self, who: _Subscriber, *, active: bool) -> None:
        broker = self.hub.broker
        limit = self.hub.settings.max_topic_length
        for document in who.documents(active=active):
            topic = document["id"]
            if len(topic) > limit:
                logger.debug("no subscription event: its topic is over %s characters", limit)
                continue
            data = json.dumps({"@context": CONTEXT, **document}, separators=(",", ":"))
            try:
                # Live only: on a topic per subscriber and selector, kept in history they
                # would push real topics' history out (a client opening and closing
                # subscriptions could empty it).
                await publish_transient(broker, topic, data, private=True)
            except Exception as exc:  # noqa: BLE001 - an event lost must not break a stream
                logger.warning("could not publish a Mercure subscription event: %s", exc)

    # -- the API ---------------------------------------------------------------------------

    def handles(self, scope: Scope) -> bool:
        """Whether the request's path is the subscriptions API's."""
        path: str = scope["path"]
        return path == SUBSCRIPTIONS_PATH or path.startswith(SUBSCRIPTIONS_PATH + "/")

    async def answer(self, request: Request) -> Response:
        """``GET`` of the collection, a topic's subscriptions, or one subscription.

        Raises:
            MercureError: 400 (a malformed path), 401, 403, 404.
        """
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw.decode("latin-1").partition("?")[0]
        parts = path[len(SUBSCRIPTIONS_PATH) :].strip("/").split("/") if path else []
        parts = [part for part in parts if part]
        if len(parts) > 2:
            raise MercureError(404, "Not Found")
        claims = self.auth.subscriber_claims(request.scope, request.query_params)
        # -- security: the requested URL is the topic to be granted (§7)
        if not claims.subscribe.matches(path):
            raise MercureError(403, "the token may not read these subscriptions")
        topic = unquote(parts[0]) if parts else None
        headers = {"Link": _LINK, "Cache-Control": "no-store"}
        if len(parts) == 2:
            who = self._active.get(unquote(parts[1]))
            found = [] if who is None else who.documents(topic, active=True)
            if not found:
                raise MercureError(404, "Not Found")
            body = {"@context": CONTEXT, **found[0], "lastEventID": self._last_event_id()}
        else:
            documents = [
                d for who in self._active.values() for d in who.documents(topic, active=True)
            ]
            body = {
                "@context": CONTEXT,
                "id": path,
                "type": "Subscriptions",
                "lastEventID": self._last_event_id(),
                "subscriptions": documents,
            }
        return Response(
            json.dumps(body, indent=2), media_type="application/ld+json", headers=headers
        )

    def _last_event_id(self) -> str:
        """The newest id of the hub when its backend tells it cheaply (memory), else
        ``earliest``. Subscription events are live only (never replayed): a client that
        subscribes to them before asking for the list misses none."""
        last = getattr(self.hub.broker.backend, "last_id", None)
        return last if isinstance(last, str) else "earliest"
