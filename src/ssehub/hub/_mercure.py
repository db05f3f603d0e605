"""The Mercure protocol at ``/.well-known/mercure`` (``ssehub serve --mercure``).

Implements the classic Mercure protocol (draft-dunglas-mercure-07, the Mercure hub 0.x):

* **Subscribe** (§3): ``GET /.well-known/mercure?topic=<selector>&topic=...``; selectors are
  exact topics, ``*`` or RFC 6570 URI templates (:mod:`._mercure_selectors`). Resume (§6) with
  the ``Last-Event-ID`` header or the ``lastEventID`` query parameter (the header wins); when
  either is given the response carries ``Last-Event-ID``: the requested id when the history
  continues exactly after it, else ``earliest`` (draft-dunglas-mercure-08 §"Reconciliation"
  spells out that rule).
* **Publish** (§5): ``POST`` ``application/x-www-form-urlencoded`` with ``topic`` (repeatable:
  the first is the canonical topic, the others alternates; the update goes to every one),
  ``data``, ``id``, ``type``, ``retry`` and ``private``; the answer is ``200 text/plain`` with
  the update's id. A publisher's ``id`` is the SSE id subscribers see and resume with
  (:mod:`ssehub.broker.chosen_ids`); without one the hub's own id is used.
* **Authorization** (§4): :mod:`._mercure_auth`.
* **Subscriptions** (§7), with ``--mercure-subscriptions``: :mod:`._mercure_subscriptions`.

Mercure's routes leave the hub's middleware stack after the request id, metrics and trusted
proxy middleware (:class:`MercureDispatch`): ssehub's own CORS and authentication do not apply
to them, Mercure's (``--mercure-cors-origins``, Mercure tokens) do. Everything else is the hub's:
the same broker and history (Mercure topics show on ``/status`` and the dashboard), the
connection limits, ``max_body_size``, ``max_event_size``, ``max_topics``,
``max_topic_length``, ``max_last_event_id_length``, ``--publish-rate``, draining, Redis
scale-out. Errors are ``text/plain``, as the Mercure hub answers them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from .._exceptions import (
    BackendUnavailable,
    BrokerClosed,
    BrokerError,
    EventTooLarge,
    EventValidationError,
    IdempotencyKeyReused,
    InvalidTopic,
    PublishOutcomeUnknown,
)
from ..broker.chosen_ids import HUB_ID_SHAPE, publish_with_id, resolve_chosen_id
from ..broker.patterns import WILDCARD, TopicMatcher, TopicPattern, split_topics
from ..broker.topics import TOPIC_PATTERN
from ..response import EventSourceResponse
from ._body import read_body
from ._cors import CORSMiddleware
from ._errors import HubHTTPError
from ._mercure_auth import MercureAuth, MercureClaims, MercureError
from ._mercure_selectors import InvalidSelector, broker_targets, check_selectors
from ._mercure_subscriptions import SUBSCRIPTIONS_PATH, MercureSubscriptions
from ._metrics import ROUTE_SCOPE_KEY
from ._patterns import TopicPatterns
from ._proxy import client_address
from ._stream import HubStream

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ..broker import Broker, StoredEvent
    from ._state import HubState

__all__ = ["EARLIEST", "HUB_PATH", "MercureApp", "MercureDispatch", "check_event_id"]

logger = logging.getLogger("ssehub.hub")

HUB_PATH: Final = "/.well-known/mercure"
"""Where the Mercure hub is served (draft-dunglas-mercure-07 §2, "Discovery")."""

EARLIEST: Final = "earliest"
"""The reserved ``Last-Event-ID``: "everything the hub has" (§6); answered when the history
cannot continue exactly after the requested id."""

_FORM: Final = "application/x-www-form-urlencoded"
_VISIBLE_ASCII: Final = frozenset(chr(c) for c in range(0x21, 0x7F))


def check_event_id(event_id: str, max_length: int) -> str:
    """Check a publisher's ``id`` (§5): 1 to ``max_length`` visible ASCII characters, not
    starting with ``#`` (hub-generated ids may). Visible ASCII keeps it one header line when a
    browser sends it back (no CR/LF, no field injection); percent-encode IRIs.

    Raises:
        MercureError: 400.
    """
    if not event_id or len(event_id) > max_length:
        raise MercureError(400, f"the id must have 1-{max_length} characters")
    if event_id.startswith("#"):
        raise MercureError(400, "the id must not start with '#'")
    if HUB_ID_SHAPE.fullmatch(event_id):
        # One id must name one update: a resuming client is sent after the update it names.
        raise MercureError(400, "the id has the form of the ids this hub assigns; choose another")
    if not set(event_id) <= _VISIBLE_ASCII:
        raise MercureError(400, "the id must be visible ASCII characters (percent-encode IRIs)")
    return event_id


def _check_topic(topic: str, max_length: int) -> None:
    """Refuse a topic the broker cannot take (400) or in the hub's own namespace (403: the
    subscriptions' topics are published by the hub only, so they cannot be forged)."""
    if not topic or len(topic) > max_length:
        raise MercureError(400, f"a topic must have 1-{max_length} characters")
    if TOPIC_PATTERN.fullmatch(topic) is None:
        raise MercureError(
            400, "a topic has a character outside RFC 3986 (percent-encode IRIs, as URIs)"
        )
    path = urlsplit(topic).path
    if path == HUB_PATH or path.startswith(HUB_PATH + "/"):
        raise MercureError(403, f"topics under {HUB_PATH} are the hub's own")


class _Form:
    """A parsed publish form (§5)."""

    def __init__(self, body: bytes, max_fields: int) -> None:
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(
                text, keep_blank_values=True, errors="strict", max_num_fields=max_fields
            )
        except (UnicodeDecodeError, ValueError):
            raise MercureError(
                400, f"the body is not a UTF-8 form of at most {max_fields} fields"
            ) from None
        self.topics = [value for name, value in pairs if name == "topic"]
        fields = {name: value for name, value in pairs if name != "topic"}
        self.data = fields.get("data", "")
        self.id = fields.get("id")
        self.type = fields.get("type") or None
        self.private = "private" in fields  # present = private, whatever its value
        retry = fields.get("retry")
        if retry is not None and not (retry.isascii() and retry.isdigit() and len(retry) <= 9):
            raise MercureError(400, "retry must be a number of milliseconds")
        self.retry = None if retry is None else int(retry)


class MercureApp:
    """The Mercure hub of one ssehub hub: an ASGI app for the paths under :data:`HUB_PATH`.

    Args:
        hub: the hub's state (broker, settings, limits).

    Raises:
        ConfigurationError: a Mercure key does not suit ``--mercure-jwt-alg``.
    """

    def __init__(self, hub: HubState) -> None:
        self.hub = hub
        self.auth = MercureAuth(hub.settings)
        # -- security: the topics Mercure governs (--mercure-topics; all when not given), and
        # its own subscription events' topics
        governed = hub.settings.mercure_topics
        self.governs = TopicPatterns([*governed, SUBSCRIPTIONS_PATH + "/*"]) if governed else None
        self.subscriptions = (
            MercureSubscriptions(hub, self.auth) if hub.settings.mercure_subscriptions else None
        )
        origins = hub.settings.mercure_cors_origins
        # Pages may read what Mercure clients look at: the resume anchor and the discovery link.
        expose = "Last-Event-ID, Link, Retry-After"
        self._app: ASGIApp = (
            CORSMiddleware(self._route, origins=origins, expose=expose) if origins else self._route
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._dispatch(Request(scope, receive, send))
        except MercureError as exc:
            response = exc.response()
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response | Callable[..., Any]:
        method = request.method
        if request.scope["path"] == HUB_PATH:
            if method in ("GET", "HEAD"):
                return await self.subscribe(request)
            if method == "POST":
                return await self.publish(request)
            raise MercureError(405, "Method Not Allowed", {"Allow": "GET, HEAD, POST"})
        if self.subscriptions is not None and self.subscriptions.handles(request.scope):
            if method not in ("GET", "HEAD"):
                raise MercureError(405, "Method Not Allowed", {"Allow": "GET, HEAD"})
            return await self.subscriptions.answer(request)
        raise MercureError(404, "Not Found")

    # -- subscribe (§3) --------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response | Callable[..., Any]:
        """``GET /.well-known/mercure``: open a stream of the selected topics' updates.

        Raises:
            MercureError: 400 (selectors, id), 401 (token), 429 (connection limits), 503.
        """
        hub, settings = self.hub, self.hub.settings
        query = request.query_params
        # Everything that may refuse the request comes before templates are compiled (the
        # token first), so a refused client costs the hub little.
        claims = self.auth.subscriber_claims(request.scope, query)
        try:
            selectors = check_selectors(
                query.getlist("topic"),
                max_count=hub.max_topics,
                max_length=settings.max_topic_length,
                max_patterns=hub.max_patterns,
            )
        except InvalidSelector as exc:
            raise MercureError(400, str(exc)) from None
        requested = request.headers.get("last-event-id") or query.get("lastEventID") or None
        if requested is not None and len(requested) > settings.max_last_event_id_length:
            raise MercureError(
                400, f"Last-Event-ID is longer than {settings.max_last_event_id_length} characters"
            )
        broker = _require_broker(hub)
        try:
            lease = hub.guard.connections.acquire(client_address(request.scope), claims.identity)
        except HubHTTPError as exc:
            raise MercureError(exc.status_code, exc.detail, exc.headers) from None
        try:
            try:
                # Checked before HEAD answers, so HEAD and GET answer alike (RFC 9110 §9.3.2).
                targets: list[Any] = broker_targets(selectors)
                if self.governs is not None:
                    targets = _governed(targets, self.governs)
                exact, matchers = split_topics(
                    targets, limit=hub.max_topics, max_patterns=hub.max_patterns
                )
            except (InvalidSelector, InvalidTopic) as exc:
                raise MercureError(400, str(exc)) from None
            if request.method == "HEAD":
                lease.release()  # the limit checked as for GET, no place held: nothing streams
                return EventSourceResponse((), ping=0)
            visible = _reader(claims)
            readable = _readable(visible, frozenset(exact), matchers)
            resume = await _resume_id(broker, requested, readable)
            try:
                # -- security: private updates only for topics the token's subscribe selectors
                # match (§4); decided here, so they are never queued nor replayed otherwise
                expires_at = hub.guard.deadline(claims.expires_at)
                subscription = broker.subscribe(
                    targets, resume, visible=visible, expires_at=expires_at
                )
            except (InvalidTopic, BrokerClosed) as exc:
                raise MercureError(
                    400 if isinstance(exc, InvalidTopic) else 503, str(exc)
                ) from None
            try:
                await subscription.prepare()
            except BaseException as exc:
                subscription.close()
                if isinstance(exc, BackendUnavailable):
                    raise MercureError(503, "the broker's backend cannot be reached") from None
                raise
        except BaseException:
            lease.release()
            raise
        headers = {"Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0"}
        if requested is not None:
            # -- security: echoed only when it is an id this hub could have sent (visible
            # ASCII): a query value may hold CR/LF or non-Latin-1 text (header injection)
            resumed = subscription.reset is None and requested != EARLIEST
            echo = resumed and set(requested) <= _VISIBLE_ASCII
            headers["Last-Event-ID"] = requested if echo else EARLIEST
        response = EventSourceResponse(
            subscription,
            headers=headers,
            ping=settings.ping,
            send_timeout=settings.send_timeout,
            shutdown_grace_period=EventSourceResponse.SHUTDOWN_SEND_TIMEOUT,
        )
        stream = HubStream(response, subscription, hub, lease)
        if self.subscriptions is None:
            return stream
        return await self.subscriptions.track(stream, selectors, claims)

    # -- publish (§5) ----------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        """``POST /.well-known/mercure``: publish one update; answer its id as text.

        Raises:
            MercureError: 400, 401, 403, 409 (an ``id`` already names another update), 413,
                415, 429, 503, 504.
        """
        hub, settings = self.hub, self.hub.settings
        claims = self.auth.publisher_claims(request.scope, request.query_params)
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != _FORM:
            raise MercureError(415, f"the body must be {_FORM}")
        try:
            body = await read_body(request, settings.max_body_size)
        except ClientDisconnect:
            raise MercureError(400, "the client left before sending the body") from None
        except HubHTTPError as exc:
            raise MercureError(exc.status_code, exc.detail) from None
        form = _Form(body, max_fields=hub.max_topics + 16)
        if not form.topics:
            raise MercureError(400, 'missing "topic" parameter')
        topics = list(dict.fromkeys(form.topics))
        if len(topics) > hub.max_topics:
            raise MercureError(400, f"more than {hub.max_topics} topics")
        for topic in topics:
            _check_topic(topic, settings.max_topic_length)
        # -- security: every topic of the update must be granted (§4, as the Mercure hub's
        # canDispatch)
        if not claims.publish.matches_all(topics):
            raise MercureError(403, "the token may not publish to these topics")
        if self.governs is not None and not all(map(self.governs.matches, topics)):
            # -- security: ssehub's own grants govern the other topics (--mercure-topics)
            raise MercureError(403, "these topics are not Mercure's on this hub")
        if form.id is not None:
            check_event_id(form.id, settings.max_last_event_id_length)
        if hub.guard.rates is not None:
            try:
                hub.guard.rates.take(claims.identity or "mercure", 1)
            except HubHTTPError as exc:
                raise MercureError(exc.status_code, exc.detail, exc.headers) from None
        stored = await _publish(_require_broker(hub), topics, form)
        event_id = stored.event.id or stored.id
        return PlainTextResponse(event_id, headers={"Cache-Control": "no-store"})


async def _publish(broker: Broker, topics: list[str], form: _Form) -> StoredEvent:
    try:
        if form.id is None:
            return await broker.publish(
                topics, form.data, event=form.type, retry=form.retry, private=form.private
            )
        return await publish_with_id(
            broker,
            topics,
            form.data,
            event_id=form.id,
            event=form.type,
            retry=form.retry,
            private=form.private,
        )
    except (InvalidTopic, EventValidationError) as exc:
        raise MercureError(400, str(exc)) from None
    except EventTooLarge as exc:
        raise MercureError(413, f"the update is larger than {exc.limit} bytes") from None
    except IdempotencyKeyReused:
        raise MercureError(409, "this id already names another update") from None
    except PublishOutcomeUnknown:
        raise MercureError(504, "the backend did not answer: the update may be published") from None
    except BrokerError:
        raise MercureError(503, "the broker's backend cannot be reached") from None


def _require_broker(hub: HubState) -> Broker:
    try:
        return hub.require_broker()
    except HubHTTPError as exc:
        raise MercureError(503, exc.detail) from None


async def _resume_id(
    broker: Broker, requested: str | None, readable: Callable[[StoredEvent], bool]
) -> str | None:
    """What the broker resumes after: the hub id of the update published under a chosen id,
    else the requested id itself (a hub id, or unknown: the stream then starts live).

    A chosen id resolves only to an update the subscriber could have received (``readable``):
    resuming must not tell whether a private update, or one on topics it did not select,
    exists under a guessed id."""
    if requested is None or requested == EARLIEST:
        # The spec lets a hub ignore "earliest" (§6); this one starts live, and says so in
        # the Last-Event-ID response header.
        return None
    try:
        return await resolve_chosen_id(broker, requested, readable=readable) or requested
    except BackendUnavailable:
        raise MercureError(503, "the broker's backend cannot be reached") from None


def _readable(
    visible: Callable[[StoredEvent], bool],
    exact: frozenset[str],
    matchers: tuple[TopicMatcher, ...],
) -> Callable[[StoredEvent], bool]:
    """Whether a subscriber may know of an update: it may see it, and selected a topic of it."""

    def readable(event: StoredEvent) -> bool:
        return visible(event) and any(
            topic in exact or any(m.matches(topic) for m in matchers) for topic in event.topics
        )

    return readable


class _Governed:
    """A Mercure selector limited to the topics Mercure governs (``--mercure-topics``): the
    broker's visibility callback sees only private updates, so public ones on ssehub's own
    topics are kept out by what the subscription selects."""

    __slots__ = ("_governs", "_inner", "key")

    def __init__(self, inner: TopicMatcher, governs: TopicPatterns) -> None:
        self._inner = inner
        self._governs = governs
        self.key = "mercure-governed:" + inner.key  # one namespace per hub

    def matches(self, topic: str) -> bool:
        return self._governs.matches(topic) and self._inner.matches(topic)


def _governed(targets: list[Any], governs: TopicPatterns) -> list[Any]:
    """``targets`` limited to the governed topics.

    Raises:
        MercureError: 403, every selector names topics only outside them.
    """
    limited: list[Any] = []
    for target in targets:
        if isinstance(target, str) and WILDCARD not in target:
            if governs.matches(target):
                limited.append(target)
        else:
            matcher = TopicPattern(target) if isinstance(target, str) else target
            limited.append(_Governed(matcher, governs))
    if not limited:
        raise MercureError(403, "these topics are not Mercure's on this hub")
    return limited


def _reader(claims: MercureClaims) -> Callable[[StoredEvent], bool]:
    """What a Mercure subscriber may see of a private update: only with a subscribe selector
    matching one of its topics (§4). Topics outside ``--mercure-topics`` are never selected
    (:func:`_governed`), so they need no test here."""
    subscribe = claims.subscribe

    def visible(event: StoredEvent) -> bool:
        return not event.private or subscribe.matches_any(event.topics)

    return visible


class MercureDispatch:
    """Middleware: requests under :data:`HUB_PATH` go to the Mercure app, the rest on.

    Args:
        app: the rest of the hub's stack.
        mercure: the Mercure app.
    """

    def __init__(self, app: ASGIApp, *, mercure: MercureApp) -> None:
        self.app = app
        self.mercure = mercure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.claim(scope):
            await self.mercure(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def claim(self, scope: Scope) -> bool:
        """Whether the request is Mercure's; if so, label its route for the metrics.

        The hub's dispatcher (``hub/_dispatch.py``) asks this too and then calls
        :attr:`mercure` itself, with the policies of the middleware outside this one.
        """
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == HUB_PATH or path.startswith(HUB_PATH + "/"):
            # -- operations: the metrics label these requests by Mercure's two routes
            scope[ROUTE_SCOPE_KEY] = HUB_PATH if path == HUB_PATH else SUBSCRIPTIONS_PATH
            return True
        return False
