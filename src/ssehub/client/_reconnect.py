"""The EventSource connection model as one pure state machine: no I/O, no clock, no httpx.

Both clients (:class:`~ssehub.client.AsyncEventSource` and :class:`~ssehub.client.EventSource`)
drive the same :class:`ReconnectMachine`, so the rules of WHATWG HTML §9.2.2-9.2.3
(https://html.spec.whatwg.org/multipage/server-sent-events.html#the-eventsource-interface) are
written once:

- a 200 response whose MIME type essence is ``text/event-stream`` *announces the connection*
  (``OPEN``); ``204 No Content`` closes the source for good; any other status or content type
  *fails the connection* (``CLOSED``, no retry);
- a network error or the normal end of a 200 body *reestablishes the connection*: wait the
  reconnection time (the server's ``retry:``), optionally longer, then reconnect with
  ``Last-Event-ID`` when the last event ID string is non-empty;
- ``close()`` sets ``CLOSED`` at once; nothing happens afterwards.

The spec allows waiting longer than the reconnection time ("optionally, wait some more", e.g.
exponential backoff); :class:`ReconnectPolicy` chooses how much longer. The drivers feed the
machine what they observe and do what its :class:`Decision` says; the randomness of the jitter
comes from an injectable source so tests can pin every delay.
"""

from __future__ import annotations

import enum
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .._exceptions import ConfigurationError, ConnectionFailed

__all__ = [
    "MAX_WAIT",
    "MIN_FAILED_RETRY",
    "RETRYABLE_STATUSES",
    "Action",
    "Decision",
    "ReadyState",
    "ReconnectMachine",
    "ReconnectPolicy",
    "is_event_stream",
]

MIN_FAILED_RETRY: Final = 0.1
"""Seconds the backoff starts from after a failed attempt when the reconnection time is
shorter (``retry: 0``): the backoff then doubles from there (0.2, 0.4, 0.8 s...), where
from zero it stayed at zero, a tight loop of requests against a dead server."""

MAX_WAIT: Final = 86400.0
"""The longest wait any policy setting may ask for (one day); below every platform's limit on
timed waits (``threading.TIMEOUT_MAX``)."""

RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Statuses that usually mean "try again later" (overload, a proxy in front of a restarting
server). Pass them as ``ReconnectPolicy(retry_statuses=RETRYABLE_STATUSES)`` to opt in."""


class ReadyState(enum.IntEnum):
    """``EventSource.readyState`` values, numbered as in the spec."""

    CONNECTING = 0
    OPEN = 1
    CLOSED = 2


class Action(enum.Enum):
    """What a driver must do next."""

    OPEN = "open"
    """Read the body: feed it to a new parser."""
    RECONNECT = "reconnect"
    """Release the response (if any), wait ``Decision.delay`` seconds, then connect again."""
    CLOSE = "close"
    """Stop cleanly (204, or ``close()`` was called): no error, no further request."""
    FAIL = "fail"
    """Stop and raise ``Decision.error``: no further request."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The machine's answer to an observation.

    Attributes:
        action: what to do.
        delay: seconds to wait before reconnecting (``Action.RECONNECT`` only).
        error: the error to raise (``Action.FAIL`` only).
    """

    action: Action
    delay: float = 0.0
    error: ConnectionFailed | None = None


def is_event_stream(content_type: str | None) -> bool:
    """Return whether a ``Content-Type`` value's MIME type essence is ``text/event-stream``.

    Parameters (``; charset=...``, even a bare trailing ``;``) and case are ignored, as the MIME
    Sniffing standard's "essence" requires (WPT ``format-mime-trailing-semicolon``);
    ``text/event-streamx`` is not a match.
    """
    if content_type is None:
        return False
    essence = content_type.split(";", 1)[0].strip(" \t\r\n")
    return essence.lower() == "text/event-stream"


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How long to wait before each reconnection.

    The delay before reconnect attempt ``k`` (``k`` = consecutive failures since the last
    successful open, so 0 right after an open stream ended) is::

        base  = reconnection time (the server's last valid ``retry:``, at most
                max_server_retry, else initial_retry)
        start = base if k == 0 else max(base, MIN_FAILED_RETRY)
        top   = min(max_delay, start * multiplier**k * (1 + jitter))
        delay = top * (1 + jitter * random()) / (1 + jitter)
        if delay < base:                # never sooner than the server asked (spec),
            if base >= max_delay:       # and still spread
                delay = base * (1 + jitter * random())
            else:
                delay = base + (top - base) * random()

    Below the cap this is ``base * multiplier**k * (1 + jitter * random())``: up to ``jitter``
    of the backed-off delay is added. Once that window reaches the cap it slides under it, to
    ``[max_delay / (1 + jitter), max_delay]``, so capped delays keep their spread (clipping
    them would bring every client of a long outage back at the same moment); a server's
    ``retry:`` above the cap is spread the same way above it. After a failed attempt the
    backoff starts from at least :data:`MIN_FAILED_RETRY`, so ``retry: 0`` (reconnect at once
    when a stream ends) cannot turn a dead server into a loop of requests (unless
    ``max_delay`` is set below it).

    Args:
        initial_retry: the reconnection time in seconds until the server sends ``retry:``.
            3 s, as npm ``eventsource``; the spec says "a few seconds".
        max_delay: cap of the backed-off delay in seconds. 30 s: a restarted hub is found
            within half a minute while a dead one costs one request per client per 30 s. A
            server's ``retry:`` above the cap still wins (the spec's minimum wait).
        max_server_retry: the longest ``retry:`` honoured, in seconds (1 hour): a larger
            value counts as this one, so a bogus or hostile value (a publisher on a hub may
            set it on every subscriber's stream) cannot park a client for years.
        multiplier: growth factor per consecutive failure (``1`` disables backoff).
        jitter: up to this fraction of the delay is added at random (at the cap: the spread
            is kept below it), so clients dropped at the same moment do not come back at the
            same moment.
        retry_statuses: HTTP statuses that reconnect (with backoff) instead of failing the
            connection. Empty by default, as browsers fail on every non-200 status; pass
            :data:`RETRYABLE_STATUSES` to survive overloaded or restarting servers. **This
            deviates from the spec.** ``Retry-After`` (seconds) on such a response is honoured
            as a minimum, up to ``max_delay``.

    Raises:
        ConfigurationError: a value is negative, a time is above :data:`MAX_WAIT`, ``jitter``
            is above 1, or ``multiplier`` is below 1.
    """

    initial_retry: float = 3.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = field(default_factory=frozenset)
    max_server_retry: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("initial_retry", "max_delay", "max_server_retry"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigurationError(f"{name} must not be negative")
            if value > MAX_WAIT:
                raise ConfigurationError(f"{name} must be at most {MAX_WAIT:g} s (one day)")
        if self.multiplier < 1:
            raise ConfigurationError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("jitter must be between 0 and 1")
        if 200 in self.retry_statuses or 204 in self.retry_statuses:
            raise ConfigurationError("200 and 204 cannot be retry statuses")
        # Accept any collection of ints; store a frozenset so the policy stays hashable.
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def delay(self, base: float, failures: int, rand: float) -> float:
        """Return the delay for a reconnection time ``base`` after ``failures`` failures.

        Args:
            base: the reconnection time in seconds.
            failures: consecutive failures since the last successful open (0 or more).
            rand: a number in ``[0, 1)``.

        Returns:
            The delay in seconds, following the formula in the class docstring.
        """
        # The exponent is bounded so a long outage cannot overflow the float.
        start = max(base, MIN_FAILED_RETRY) if failures else base
        grown = start * self.multiplier ** min(failures, 64)
        spread = 1.0 + self.jitter
        # Cap the top of the jitter window rather than the jittered delay: capping after the
        # jitter would pin every delay at max_delay, exactly when a whole cohort of clients is
        # retrying a dead server. The factor is at most 1, so the delay never exceeds the cap,
        # and it is one multiplication of a monotonic ``top``, so it never shrinks as
        # ``failures`` grows.
        top = min(self.max_delay, grown * spread)
        delay = top * ((1.0 + self.jitter * rand) / spread)
        if delay < base:
            # Never sooner than the server asked (spec), and still spread, or a cohort would
            # come back at the very same moment: above a retry: beyond the cap, else between
            # it and the top of the window (at most the cap).
            if base >= self.max_delay:
                return self.spread_above(base, rand)
            delay = base + (top - base) * rand
        return delay

    def spread_above(self, floor: float, rand: float) -> float:
        """Return a delay of at least ``floor`` with the jitter added above it.

        Args:
            floor: the least delay (a ``retry:`` above the cap, a ``Retry-After``).
            rand: a number in ``[0, 1)``.
        """
        return floor * (1.0 + self.jitter * rand)


class ReconnectMachine:
    """The state of one EventSource across its connections; pure and synchronous.

    Args:
        policy: the reconnection policy (defaults to :class:`ReconnectPolicy()`).
        last_event_id: the initial last event ID string (resume from it on the first request).
        random: a function returning floats in ``[0, 1)``, used for the jitter.

    Attributes:
        ready_state: ``CONNECTING``, ``OPEN`` or ``CLOSED``.
        last_event_id: the last event ID string; sent as ``Last-Event-ID`` when non-empty.
        reconnection_time: seconds; the server's last valid ``retry:``, else the policy's initial.
        failures: consecutive failed attempts since the last successful open.
    """

    def __init__(
        self,
        policy: ReconnectPolicy | None = None,
        *,
        last_event_id: str = "",
        random: Callable[[], float] = _random.random,
    ) -> None:
        if "\0" in last_event_id or "\r" in last_event_id or "\n" in last_event_id:
            raise ConfigurationError("last_event_id must not contain NUL, CR or LF")
        self.policy = policy if policy is not None else ReconnectPolicy()
        self.ready_state = ReadyState.CONNECTING
        self.last_event_id = last_event_id
        self.reconnection_time = self.policy.initial_retry
        self.failures = 0
        self._random = random

    def request_headers(self) -> dict[str, bytes]:
        """Return the headers the next request must carry that depend on the state.

        ``Last-Event-ID`` is the last event ID string encoded as UTF-8 (§9.2.4), and only
        when it is non-empty.
        """
        if self.last_event_id:
            return {"Last-Event-ID": self.last_event_id.encode("utf-8")}
        return {}

    def on_response(
        self,
        status: int,
        content_type: str | None,
        *,
        retry_after: str | None = None,
    ) -> Decision:
        """Observe a response's status and headers (after redirects were followed).

        Args:
            status: the HTTP status code.
            content_type: the ``Content-Type`` header, or ``None``.
            retry_after: the ``Retry-After`` header, consulted only for a retry status.

        Returns:
            ``OPEN`` (the failure count resets), ``CLOSE`` for 204 or a closed machine,
            ``RECONNECT`` for an opted-in retry status, else ``FAIL`` with a
            :class:`~ssehub.ConnectionFailed` carrying the status.
        """
        if self.ready_state is ReadyState.CLOSED:
            return Decision(Action.CLOSE)
        if status == 200 and is_event_stream(content_type):
            # "Announce the connection"; the backoff restarts from the reconnection time.
            self.ready_state = ReadyState.OPEN
            self.failures = 0
            return Decision(Action.OPEN)
        if status == 204:
            # §9.2.1: "a client can be told to stop reconnecting using 204 No Content".
            self.ready_state = ReadyState.CLOSED
            return Decision(Action.CLOSE)
        if status in self.policy.retry_statuses:
            decision = self.on_disconnect()
            floor = _retry_after_seconds(retry_after)
            if floor is not None:
                floor = min(floor, max(self.policy.max_delay, self.reconnection_time))
                if decision.delay < floor:
                    # Spread, as every client refused at once gets the same Retry-After.
                    delay = self.policy.spread_above(floor, self._random())
                    decision = Decision(Action.RECONNECT, delay)
            return decision
        self.ready_state = ReadyState.CLOSED
        if status != 200:
            message = f"the server answered HTTP {status}, not 200"
        else:
            shown = "no Content-Type" if content_type is None else repr(content_type)
            message = f"the server sent {shown}, not text/event-stream"
        return Decision(Action.FAIL, error=ConnectionFailed(message, status_code=status))

    def on_progress(self, last_event_id: str, retry: int | None) -> None:
        """Observe the parser's state after a chunk: its last event ID string and ``retry``.

        Args:
            last_event_id: the parser's committed last event ID string.
            retry: the parser's last valid ``retry:`` value in milliseconds, or ``None``.
        """
        self.last_event_id = last_event_id
        if retry is not None:
            self.reconnection_time = min(retry / 1000, self.policy.max_server_retry)

    def on_disconnect(self) -> Decision:
        """Observe a network error, an idle timeout or the normal end of the stream.

        Returns:
            ``RECONNECT`` with the delay to wait (and the state becomes ``CONNECTING``), or
            ``CLOSE`` when the machine is already closed.
        """
        if self.ready_state is ReadyState.CLOSED:
            return Decision(Action.CLOSE)
        self.ready_state = ReadyState.CONNECTING
        delay = self.policy.delay(self.reconnection_time, self.failures, self._random())
        self.failures += 1
        return Decision(Action.RECONNECT, delay)

    def on_interrupted(self) -> Decision:
        """Observe that the driver dropped an open connection itself (its caller was cancelled).

        Not the server's fault, so it is not counted as a failure and no wait is needed.

        Returns:
            ``RECONNECT`` with no delay, or ``CLOSE`` when the machine is already closed.
        """
        if self.ready_state is ReadyState.CLOSED:
            return Decision(Action.CLOSE)
        self.ready_state = ReadyState.CONNECTING
        return Decision(Action.RECONNECT, 0.0)

    def fail(self, error: ConnectionFailed) -> Decision:
        """Fail the connection for a reason found by the driver (e.g. a redirect loop).

        Returns:
            ``FAIL`` carrying ``error``, or ``CLOSE`` when already closed.
        """
        if self.ready_state is ReadyState.CLOSED:
            return Decision(Action.CLOSE)
        self.ready_state = ReadyState.CLOSED
        return Decision(Action.FAIL, error=error)

    def close(self) -> None:
        """Set ``CLOSED``: every later observation answers ``CLOSE``."""
        self.ready_state = ReadyState.CLOSED

    @property
    def closed(self) -> bool:
        """Whether the machine is ``CLOSED``."""
        return self.ready_state is ReadyState.CLOSED


def _retry_after_seconds(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP date would need a clock, and the policy's own
    # backoff already spaces the attempts.
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return float(int(value))
