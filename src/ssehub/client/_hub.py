"""``HubClient`` and ``AsyncHubClient``: typed helpers for the hub's HTTP API.

The API (``ssehub serve``): ``POST /publish`` with ``{"topic" | "topics", "data", "event"?,
"retry"?}`` (a JSON array publishes a batch, all or nothing), ``GET /events?topic=T...`` (the
event stream), ``GET /status``. Errors are 4xx/5xx with a JSON body ``{"error": code, "detail":
message}``; they become :class:`~ssehub.HubResponseError` carrying that body.

Publishing sends an idempotency key and retries safely (:mod:`ssehub.client._publish`).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, overload

import anyio

from .._exceptions import ConfigurationError, HubResponseError
from ..wire import MessageEvent
from ._async import AsyncEventSource
from ._common import DEFAULT_IDLE_TIMEOUT, ReconnectCallback, require_httpx, validate_url
from ._publish import (
    IDEMPOTENCY_HEADER,
    Publication,
    PublishResult,
    PublishRetry,
    RetryCallback,
    Retrying,
    batch_body,
    decode,
    encode,
    new_idempotency_key,
    result,
    results,
    unreachable,
)
from ._reconnect import ReconnectPolicy
from ._sync import EventSource

if TYPE_CHECKING:
    import httpx

    from ..protocols import EventProtocol, TypedEvent

__all__ = [
    "DEFAULT_HUB_URL",
    "HUB_URL_ENV",
    "TOKEN_ENV",
    "AsyncHubClient",
    "HubClient",
    "Publication",
    "PublishResult",
    "PublishRetry",
    "default_hub_url",
    "token_headers",
]

DEFAULT_HUB_URL: Final = "http://127.0.0.1:8000"
"""Where ``ssehub serve`` listens by default."""

HUB_URL_ENV: Final = "SSEHUB_URL"
"""The environment variable the ``ssehub`` commands read the hub's URL from."""

TOKEN_ENV: Final = "SSEHUB_TOKEN"  # noqa: S105 - a variable name, not a secret
"""The environment variable the ``ssehub`` commands read the hub credential from (a JWT or an
API key), sent as ``Authorization: Bearer``. Safer than ``--token``: arguments show in ``ps``."""

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds for one API call (connect, send, and each read)."""

T = TypeVar("T")
Topics: TypeAlias = str | Sequence[str]


def default_hub_url(environ: Mapping[str, str] | None = None) -> str:
    """Return ``$SSEHUB_URL`` when set and non-empty, else :data:`DEFAULT_HUB_URL`."""
    env = os.environ if environ is None else environ
    return env.get(HUB_URL_ENV) or DEFAULT_HUB_URL


def token_headers(
    token: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the ``Authorization`` header for a hub credential, or no header.

    Args:
        token: the credential (a JWT or an API key); when empty, ``$SSEHUB_TOKEN`` is used.
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``{"Authorization": "Bearer <token>"}``, or ``{}`` when there is no credential.

    Raises:
        ConfigurationError: the credential contains whitespace or control characters.
    """
    env = os.environ if environ is None else environ
    value = token or env.get(TOKEN_ENV) or ""
    if not value:
        return {}
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ConfigurationError("the token must not contain whitespace or control characters")
    return {"Authorization": f"Bearer {value}"}


def _base(url: str) -> str:
    return validate_url(url).rstrip("/")


def _events_url(base: str, topics: Topics) -> str:
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names:
        raise ConfigurationError("subscribe to at least one topic")
    return f"{base}/events?{urllib.parse.urlencode([('topic', name) for name in names])}"


class HubClient:
    """A blocking client of an ssehub hub.

    Args:
        url: the hub's base URL, e.g. ``http://127.0.0.1:8000`` (a path prefix is kept).
        headers: headers for every request, e.g. ``{"Authorization": "Bearer ..."}``.
        timeout: seconds for each API call.
        client: an ``httpx.Client`` to use (not closed by this object). Sources from
            :meth:`subscribe` use it too, so its TLS, proxy and auth settings apply to streams.
        publish_retry: how publishes retry on 502/503/504 and network errors, with the same
            idempotency key (:class:`PublishRetry()`; ``PublishRetry(attempts=1)``: never).
        on_retry: called before each such wait with ``(attempt, delay, cause)``.

    Raises:
        ConfigurationError: the URL is invalid or not http(s).
        MissingDependency: httpx is not installed.

    API calls raise :class:`~ssehub.HubResponseError` (with the hub's JSON error) for 4xx/5xx
    answers and :class:`~ssehub.ConnectionFailed` when the hub cannot be reached.
    """

    def __init__(
        self,
        url: str = DEFAULT_HUB_URL,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        publish_retry: PublishRetry | None = None,
        on_retry: RetryCallback | None = None,
    ) -> None:
        require_httpx()
        import httpx

        self.url = _base(url)
        self._headers = dict(headers or {})
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        # Streams share only a client the caller made: ours closes with this object, which
        # would break a source that outlives it.
        self._stream_client = client
        self.publish_retry = publish_retry if publish_retry is not None else PublishRetry()
        self._on_retry = on_retry

    def _post(self, payload: Any, key: str | None = None) -> httpx.Response:
        """POST ``payload`` to ``/publish``; retry the very same request (body, key) as
        :attr:`publish_retry` says, and return the last answer."""
        import httpx

        headers = {**self._headers, "Content-Type": "application/json"}
        if key is not None:
            headers[IDEMPOTENCY_HEADER] = key
        content = encode(payload)
        retrying = Retrying(self.publish_retry, self._on_retry)
        while True:
            try:
                response = self._client.post(
                    f"{self.url}/publish", content=content, headers=headers
                )
            except httpx.TransportError as exc:
                error = unreachable(self.url, exc)
                delay = retrying.after(error)
                if delay is None:
                    raise error from exc
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from exc
            else:
                delay = retrying.after_response(response)
                if delay is None:
                    return response
            time.sleep(delay)

    def publish(
        self,
        topic: Topics,
        data: Any,
        *,
        event: str | None = None,
        retry: int | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish one event to one or more topics, retrying safely (see :class:`HubClient`).

        Args:
            topic: a topic, or a sequence of topics.
            data: a string (delivered verbatim) or any JSON value (delivered as compact JSON).
            event: the event type.
            retry: a reconnection time in milliseconds for the subscribers.
            idempotency_key: names this publication (1-255 visible ASCII characters), sent as
                ``Idempotency-Key`` with every attempt; a new random one when ``None``. Give
                your own (an order id, a job id) to retry safely beyond this call, even from
                another process: the hub stores the event once per key while it is in history.

        Returns:
            The id the hub assigned, the topics and the number of subscribers reached.

        Raises:
            HubResponseError: the hub rejected the event (its JSON error is attached), or still
                answered 502/503/504 after the last attempt (``error["outcome"] ==
                "unknown"`` for 504: it may be published; retry with the same key).
            ConnectionFailed: the hub cannot be reached (after the last attempt).
            EventValidationError: ``data`` is not JSON-serializable.
        """
        key = new_idempotency_key() if idempotency_key is None else idempotency_key
        response = self._post(Publication(topic, data, event, retry).to_json(), key)
        return result(decode(response), response.status_code)

    def publish_many(
        self, publications: Iterable[Publication | Mapping[str, Any]]
    ) -> list[PublishResult]:
        """Publish a batch in order, all or nothing (one request).

        Each event carries its ``idempotency_key`` (a new one for each event without), so the
        batch is retried as safely as :meth:`publish`.

        Args:
            publications: :class:`Publication` values or the equivalent JSON objects.

        Returns:
            One result per event, in order.

        Raises:
            HubResponseError: the hub rejected the batch; nothing was published (or, for 504,
                it may have been: retry with the same keys).
            ConnectionFailed: the hub cannot be reached.
            EventValidationError: some ``data`` is not JSON-serializable.
        """
        response = self._post(batch_body(publications))
        return results(decode(response), response.status_code)

    def status(self) -> dict[str, Any]:
        """Return the hub's ``GET /status`` JSON (uptime, connections, topics, totals).

        Raises:
            HubResponseError: the hub answered with an error.
            ConnectionFailed: the hub cannot be reached.
        """
        import httpx

        try:
            # Redirects followed (http to https, a moved hub); httpx drops the credential
            # when one leaves the origin.
            response = self._client.get(
                f"{self.url}/status", headers=self._headers, follow_redirects=True
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        body = decode(response)
        if not isinstance(body, dict):
            raise HubResponseError(
                response.status_code, {"error": "invalid_response", "detail": "not an object"}
            )
        return body

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: None = ...,
        protocol: None = ...,
    ) -> EventSource[MessageEvent]: ...

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: Callable[[MessageEvent], T],
        protocol: None = ...,
    ) -> EventSource[T]: ...

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: None = ...,
        protocol: EventProtocol,
    ) -> EventSource[TypedEvent[Any]]: ...

    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = None,
        *,
        policy: ReconnectPolicy | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        on_reconnect: ReconnectCallback | None = None,
        on_open: Callable[[], None] | None = None,
        decoder: Callable[[MessageEvent], Any] | None = None,
        protocol: EventProtocol | None = None,
    ) -> EventSource[Any]:
        """Return an :class:`EventSource` on ``GET /events`` for ``topics``.

        Args:
            topics: a topic, or a sequence of topics (one stream, one id sequence).
            last_event_id: resume after this id (events still in the hub's history replay).
            policy: reconnection delays and retry statuses.
            idle_timeout: seconds without a byte before reconnecting.
            on_reconnect: called with ``(delay, cause)`` before each reconnection.
            on_open: called each time a connection opens (the browser's ``open`` event).
            decoder: turns each event into the delivered value.
            protocol: a typed protocol to negotiate and decode with (the source then delivers
                :class:`ssehub.protocols.TypedEvent` values); not together with ``decoder``.

        Returns:
            A new source; close it when done. It uses the ``client`` given to this object, if
            any (keep that client open while the source runs), else its own.

        Raises:
            ConfigurationError: no topic, or both ``decoder`` and ``protocol`` were given.
        """
        url = _events_url(self.url, topics)
        if protocol is not None:
            if decoder is not None:
                raise ConfigurationError("pass either decoder or protocol, not both")
            return EventSource(
                url,
                headers=self._headers,
                last_event_id=last_event_id or "",
                policy=policy,
                idle_timeout=idle_timeout,
                on_reconnect=on_reconnect,
                on_open=on_open,
                protocol=protocol,
                client=self._stream_client,
            )
        return EventSource(
            url,
            headers=self._headers,
            last_event_id=last_event_id or "",
            policy=policy,
            idle_timeout=idle_timeout,
            on_reconnect=on_reconnect,
            on_open=on_open,
            decoder=decoder or _identity,
            client=self._stream_client,
        )

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncHubClient:
    """The async twin of :class:`HubClient` (anyio: asyncio or trio).

    Args and errors are those of :class:`HubClient`; ``client`` is an ``httpx.AsyncClient``.
    """

    def __init__(
        self,
        url: str = DEFAULT_HUB_URL,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
        publish_retry: PublishRetry | None = None,
        on_retry: RetryCallback | None = None,
    ) -> None:
        require_httpx()
        import httpx

        self.url = _base(url)
        self._headers = dict(headers or {})
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        # Streams share only a client the caller made (see HubClient).
        self._stream_client = client
        self.publish_retry = publish_retry if publish_retry is not None else PublishRetry()
        self._on_retry = on_retry

    async def _post(self, payload: Any, key: str | None = None) -> httpx.Response:
        """See :meth:`HubClient._post`; waits with ``anyio.sleep``."""
        import httpx

        headers = {**self._headers, "Content-Type": "application/json"}
        if key is not None:
            headers[IDEMPOTENCY_HEADER] = key
        content = encode(payload)
        retrying = Retrying(self.publish_retry, self._on_retry)
        while True:
            try:
                response = await self._client.post(
                    f"{self.url}/publish", content=content, headers=headers
                )
            except httpx.TransportError as exc:
                error = unreachable(self.url, exc)
                delay = retrying.after(error)
                if delay is None:
                    raise error from exc
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from exc
            else:
                delay = retrying.after_response(response)
                if delay is None:
                    return response
            await anyio.sleep(delay)

    async def publish(
        self,
        topic: Topics,
        data: Any,
        *,
        event: str | None = None,
        retry: int | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish one event, retrying safely; see :meth:`HubClient.publish`."""
        key = new_idempotency_key() if idempotency_key is None else idempotency_key
        response = await self._post(Publication(topic, data, event, retry).to_json(), key)
        return result(decode(response), response.status_code)

    async def publish_many(
        self, publications: Iterable[Publication | Mapping[str, Any]]
    ) -> list[PublishResult]:
        """Publish a batch, all or nothing; see :meth:`HubClient.publish_many`."""
        response = await self._post(batch_body(publications))
        return results(decode(response), response.status_code)

    async def status(self) -> dict[str, Any]:
        """Return the hub's ``GET /status`` JSON; see :meth:`HubClient.status`."""
        import httpx

        try:
            response = await self._client.get(
                f"{self.url}/status", headers=self._headers, follow_redirects=True
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        body = decode(response)
        if not isinstance(body, dict):
            raise HubResponseError(
                response.status_code, {"error": "invalid_response", "detail": "not an object"}
            )
        return body

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: None = ...,
        protocol: None = ...,
    ) -> AsyncEventSource[MessageEvent]: ...

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: Callable[[MessageEvent], T],
        protocol: None = ...,
    ) -> AsyncEventSource[T]: ...

    @overload
    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = ...,
        *,
        policy: ReconnectPolicy | None = ...,
        idle_timeout: float | None = ...,
        on_reconnect: ReconnectCallback | None = ...,
        on_open: Callable[[], None] | None = ...,
        decoder: None = ...,
        protocol: EventProtocol,
    ) -> AsyncEventSource[TypedEvent[Any]]: ...

    def subscribe(
        self,
        topics: Topics,
        last_event_id: str | None = None,
        *,
        policy: ReconnectPolicy | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        on_reconnect: ReconnectCallback | None = None,
        on_open: Callable[[], None] | None = None,
        decoder: Callable[[MessageEvent], Any] | None = None,
        protocol: EventProtocol | None = None,
    ) -> AsyncEventSource[Any]:
        """Return an :class:`AsyncEventSource` on ``GET /events``; see
        :meth:`HubClient.subscribe`. Use it with ``async with``."""
        url = _events_url(self.url, topics)
        if protocol is not None:
            if decoder is not None:
                raise ConfigurationError("pass either decoder or protocol, not both")
            return AsyncEventSource(
                url,
                headers=self._headers,
                last_event_id=last_event_id or "",
                policy=policy,
                idle_timeout=idle_timeout,
                on_reconnect=on_reconnect,
                on_open=on_open,
                protocol=protocol,
                client=self._stream_client,
            )
        return AsyncEventSource(
            url,
            headers=self._headers,
            last_event_id=last_event_id or "",
            policy=policy,
            idle_timeout=idle_timeout,
            on_reconnect=on_reconnect,
            on_open=on_open,
            decoder=decoder or _identity,
            client=self._stream_client,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncHubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _identity(event: MessageEvent) -> Any:
    return event
