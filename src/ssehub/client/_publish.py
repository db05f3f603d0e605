"""Publishing through the hub's ``POST /publish``: the values, the answers, and safe retries.

Every publish carries an idempotency key, generated once per logical publish (the caller may
give one) and sent again, unchanged, with each retry: the ``Idempotency-Key`` header for one
event, an ``idempotency_key`` field per event for a batch. The hub stores a publication once per
key, so a retry is safe whatever became of the attempt before it. What is retried
(:class:`PublishRetry`):

- ``503`` (the hub answers it only when nothing was published: the broker is not running or its
  backend refused before the event was sent), ``504`` (the hub's ``outcome_unknown``: the backend
  was sent the event and did not answer; a proxy's 504 means as little) and ``502`` (a proxy that
  lost the hub);
- a network error or timeout, whether the request was sent or not.

Other answers (4xx: the publication itself is refused) are final. Retries are bounded in number,
with exponential backoff and jitter, and honour ``Retry-After``.
"""

from __future__ import annotations

import json
import random as _random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .._exceptions import (
    ConfigurationError,
    ConnectionFailed,
    EventValidationError,
    HubResponseError,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "IDEMPOTENCY_HEADER",
    "RETRY_STATUSES",
    "Publication",
    "PublishResult",
    "PublishRetry",
    "RetryCallback",
    "Retrying",
    "batch_body",
    "decode",
    "encode",
    "new_idempotency_key",
    "result",
    "results",
    "unreachable",
]

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

RETRY_STATUSES: Final = frozenset({502, 503, 504})
"""Answers after which a publish is tried again (with the same idempotency key)."""

Topics: TypeAlias = str | Sequence[str]

RetryCallback = Callable[[int, float, BaseException], None]
"""Called before each wait for a retry: ``(attempt, delay_seconds, cause)``, where ``attempt``
is the number of the attempt that failed (1 for the first) and ``cause`` the
:class:`~ssehub.HubResponseError` (502, 503, 504) or :class:`~ssehub.ConnectionFailed` it met."""


def new_idempotency_key() -> str:
    """Return a fresh idempotency key (a random UUID, 36 characters)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the hub answered for one published event.

    Attributes:
        id: the id the hub assigned.
        topics: the topics the event went to.
        subscribers: how many subscribers it was delivered to.
    """

    id: str
    topics: tuple[str, ...]
    subscribers: int


@dataclass(frozen=True, slots=True)
class Publication:
    """One event of a batch for :meth:`HubClient.publish_many`.

    Attributes:
        topic: a topic, or a sequence of topics.
        data: a string (delivered verbatim) or any JSON value (delivered as compact JSON).
        event: the event type, or ``None`` for ``message``.
        retry: a reconnection time in milliseconds for the subscribers, or ``None``.
        idempotency_key: names this event's publication (1-255 visible ASCII characters);
            ``None``: the client generates one for each call of ``publish_many``.
    """

    topic: Topics
    data: Any
    event: str | None = None
    retry: int | None = None
    idempotency_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object ``POST /publish`` expects for this event."""
        body: dict[str, Any] = (
            {"topic": self.topic} if isinstance(self.topic, str) else {"topics": list(self.topic)}
        )
        body["data"] = self.data
        if self.event is not None:
            body["event"] = self.event
        if self.retry is not None:
            body["retry"] = self.retry
        if self.idempotency_key is not None:
            body["idempotency_key"] = self.idempotency_key
        return body


@dataclass(frozen=True, slots=True)
class PublishRetry:
    """How often, and after how long, a publish is tried again (see the module docstring).

    The wait before attempt ``k + 1`` (``k`` failed attempts so far) is::

        delay = min(max_delay, initial_delay * multiplier**(k - 1)) * (1 + jitter * random())

    at least the answer's ``Retry-After`` (seconds, up to ``max_delay``). The defaults try five
    times over about 8-12 s of waiting (plus each attempt's own time): long enough for a Redis
    failover or a hub restart, short enough that a caller is not stalled for minutes.

    Args:
        attempts: tries in all, the first included (``1``: never retry).
        initial_delay: seconds before the second attempt.
        max_delay: cap of the backed-off delay (the jitter may add to it).
        multiplier: growth of the delay per failed attempt.
        jitter: up to this fraction of the delay is added at random, so publishers that failed
            together do not retry together.
        retry_statuses: the answers that are retried (:data:`RETRY_STATUSES`).

    Raises:
        ConfigurationError: ``attempts`` is below 1, a delay is negative, or ``multiplier`` is
            below 1.
    """

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError("attempts must be an int")
        if self.attempts < 1:
            raise ConfigurationError("attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.jitter < 0:
            raise ConfigurationError("delays and jitter must not be negative")
        if self.multiplier < 1:
            raise ConfigurationError("multiplier must be at least 1")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def delay(self, failures: int, rand: float, retry_after: float | None = None) -> float:
        """Return the seconds to wait after ``failures`` failed attempts (1 or more).

        Args:
            failures: the attempts that failed so far.
            rand: a number in ``[0, 1)`` for the jitter.
            retry_after: the answer's ``Retry-After`` in seconds, if any.
        """
        grown = self.initial_delay * self.multiplier ** min(failures - 1, 64)
        delay = min(self.max_delay, grown) * (1.0 + self.jitter * rand)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay


@dataclass(slots=True)
class Retrying:
    """One logical publish being tried: decides, after each attempt, whether to try again.

    Args:
        policy: the retry policy.
        on_retry: called before each wait.
        random: the jitter's random source.
    """

    policy: PublishRetry
    on_retry: RetryCallback | None = None
    random: Callable[[], float] = _random.random
    failures: int = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """Return the delay before retrying after ``response``, or ``None`` to use it."""
        if response.status_code not in self.policy.retry_statuses:
            return None
        return self.after(_error(response), _retry_after(response))

    def after(self, cause: BaseException, retry_after: float | None = None) -> float | None:
        """Count a failed attempt (a retryable ``cause``); return the delay before the next
        one, or ``None`` when it was the last."""
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return None
        delay = self.policy.delay(self.failures, self.random(), retry_after)
        if self.on_retry is not None:
            self.on_retry(self.failures, delay, cause)
        return delay


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # absent, or an HTTP date: the backoff applies
    return seconds if 0 <= seconds < float("inf") else None


def _error(response: httpx.Response) -> HubResponseError:
    try:
        decode(response)
    except HubResponseError as exc:
        return exc
    raise AssertionError("a retry status is an error")  # pragma: no cover


def encode(payload: Any) -> bytes:
    """Return ``payload`` as UTF-8 JSON.

    Raises:
        EventValidationError: it is not JSON-serializable.
    """
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EventValidationError("data", f"not JSON-serializable: {exc}") from exc


def batch_body(publications: Iterable[Publication | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the JSON array of a batch, each event with an idempotency key (its own, or a new
    one: the keys are made once per call, then reused by every retry of it)."""
    body = [p.to_json() if isinstance(p, Publication) else dict(p) for p in publications]
    for item in body:
        if item.get("idempotency_key") is None:
            item["idempotency_key"] = new_idempotency_key()
    return body


def decode(response: httpx.Response) -> Any:
    """Return the JSON body of a successful response; raise HubResponseError otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success:
        if isinstance(body, dict) and "error" in body:
            raise HubResponseError(response.status_code, body)
        location = response.headers.get("location") if response.is_redirect else None
        if location is not None:
            # Not followed for a publish (a 301/302 turns a POST into a GET; resending a body
            # elsewhere is the caller's decision): say where the hub is.
            raise HubResponseError(
                response.status_code,
                {
                    "error": f"http_{response.status_code}",
                    "detail": f"the hub redirected to {location}; use that URL",
                },
            )
        text = response.text.strip()[:200]
        raise HubResponseError(
            response.status_code, {"error": f"http_{response.status_code}", "detail": text}
        )
    if body is None:
        raise HubResponseError(
            response.status_code, {"error": "invalid_response", "detail": "the body is not JSON"}
        )
    return body


def result(item: Any, status: int) -> PublishResult:
    """Return the :class:`PublishResult` of one event of an answer.

    Raises:
        HubResponseError: ``invalid_response``: the answer is not a publish result.
    """
    try:
        return PublishResult(str(item["id"]), tuple(item["topics"]), int(item["subscribers"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise HubResponseError(
            status, {"error": "invalid_response", "detail": f"unexpected publish result {item!r}"}
        ) from exc


def results(body: Any, status: int) -> list[PublishResult]:
    """Return the results of a batch answer (``{"events": [...]}``; a bare list is accepted)."""
    items = body.get("events", body.get("results")) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise HubResponseError(
            status, {"error": "invalid_response", "detail": "unexpected batch answer"}
        )
    return [result(item, status) for item in items]


def unreachable(base: str, exc: Exception) -> ConnectionFailed:
    """Return the :class:`~ssehub.ConnectionFailed` for a network error reaching ``base``."""
    error = ConnectionFailed(f"cannot reach the hub at {base}: {exc or type(exc).__name__}")
    error.__cause__ = exc
    return error
