"""The pure reconnect state machine: every transition and every delay, without any I/O."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub import ConfigurationError, ConnectionFailed
from ssehub.client import (
    RETRYABLE_STATUSES,
    Action,
    ReadyState,
    ReconnectMachine,
    ReconnectPolicy,
    is_event_stream,
)
from ssehub.client._reconnect import MIN_FAILED_RETRY


def zero() -> float:
    return 0.0


def sequence(*values: float):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda: next(it)


# -- content type --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "text/event-stream",
        "text/event-stream;",
        "Text/Event-Stream; charset=utf-8",
        " text/event-stream",
        "TEXT/EVENT-STREAM ; charset=windows-1252",
        "text/event-stream;foo=bar;baz",
    ],
)
def test_event_stream_essences_are_accepted(value: str) -> None:
    assert is_event_stream(value)


@pytest.mark.parametrize(
    "value",
    [None, "", "text/html", "text/event-streamx", "text/event", "application/json", "text/plain;"],
)
def test_other_content_types_are_refused(value: str | None) -> None:
    assert not is_event_stream(value)


# -- policy ----------------------------------------------------------------------------------------


def test_default_policy_values_are_documented_ones() -> None:
    policy = ReconnectPolicy()
    assert policy.initial_retry == 3.0
    assert policy.max_delay == 30.0
    assert policy.multiplier == 2.0
    assert policy.jitter == 0.5
    assert policy.retry_statuses == frozenset()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_retry": -1},
        {"max_delay": -0.1},
        {"multiplier": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"max_delay": 86401},
        {"initial_retry": 10**10},
        {"max_server_retry": -1},
        {"max_server_retry": 10**9},
        {"retry_statuses": frozenset({200})},
        {"retry_statuses": frozenset({204})},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_statuses_become_a_frozenset() -> None:
    policy = ReconnectPolicy(retry_statuses={503, 429})  # type: ignore[arg-type]
    assert policy.retry_statuses == frozenset({429, 503})
    hash(policy)


def test_delay_grows_exponentially_up_to_the_cap() -> None:
    policy = ReconnectPolicy(max_delay=10.0, jitter=0.0)
    assert [policy.delay(1.0, k, 0.0) for k in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_adds_up_to_its_fraction() -> None:
    policy = ReconnectPolicy(max_delay=100.0, jitter=0.5)
    assert policy.delay(2.0, 0, 0.0) == 2.0
    assert policy.delay(2.0, 0, 0.5) == 2.5
    assert policy.delay(2.0, 1, 0.999) == pytest.approx(4 * 1.4995)


def test_server_retry_above_the_cap_wins_and_keeps_its_jitter() -> None:
    # The spec's wait is "the reconnection time"; the cap only limits the backoff on top.
    # The jitter is added above it: a cohort told to wait 60 s came back in lockstep.
    policy = ReconnectPolicy(max_delay=5.0)
    assert policy.delay(60.0, 3, 0.0) == 60.0
    assert policy.delay(60.0, 3, 0.9) == pytest.approx(60.0 * 1.45)
    delays = {policy.delay(60.0, 3, rand) for rand in (0.1, 0.4, 0.7)}
    assert len(delays) == 3


def test_retry_zero_still_backs_off_once_attempts_fail() -> None:
    # retry: 0 (or initial_retry=0, --reconnect-delay 0) made every delay 0: a dead server
    # got hundreds of requests a second from each client.
    policy = ReconnectPolicy(jitter=0.0)
    assert policy.delay(0.0, 0, 0.5) == 0.0  # a stream that ended: reconnect at once
    failed = [policy.delay(0.0, k, 0.5) for k in range(1, 5)]
    assert failed == pytest.approx([2 * MIN_FAILED_RETRY, 0.4, 0.8, 1.6])


def test_a_huge_server_retry_is_bounded() -> None:
    # A publisher may set retry: on every subscriber's stream; 10**13 ms parked the async
    # client for 317 years and crashed the blocking one (OverflowError).
    machine = ReconnectMachine(random=zero)
    machine.on_progress("", 10**13)
    assert machine.reconnection_time == 3600.0
    machine = ReconnectMachine(ReconnectPolicy(max_server_retry=60.0), random=zero)
    machine.on_progress("", 120_000)
    assert machine.reconnection_time == 60.0
    machine.on_progress("", 1_500)
    assert machine.reconnection_time == 1.5


def test_retry_after_keeps_the_jitter_above_it() -> None:
    # Every client refused by one 429 gets the same Retry-After: exact floors made them all
    # come back at the same moment.
    delays = set()
    for rand in (0.0, 0.3, 0.6, 0.9):
        machine = ReconnectMachine(
            ReconnectPolicy(retry_statuses=RETRYABLE_STATUSES, initial_retry=1.0),
            random=lambda rand=rand: rand,
        )
        decision = machine.on_response(429, None, retry_after="5")
        assert 5.0 <= decision.delay <= 7.5
        delays.add(decision.delay)
    assert len(delays) == 4


def test_delay_for_a_long_outage_does_not_overflow() -> None:
    assert ReconnectPolicy(max_delay=30.0).delay(3.0, 10_000, 0.5) == 25.0


def test_capped_delays_keep_their_jitter_below_the_cap() -> None:
    # Clipping the jittered delay at the cap made every capped delay exactly max_delay, so a
    # cohort of clients retrying a dead server came back in lockstep.
    policy = ReconnectPolicy(max_delay=30.0, jitter=0.5)
    capped = [policy.delay(3.0, 20, rand) for rand in (0.0, 0.25, 0.5, 0.999)]
    assert capped == pytest.approx([20.0, 22.5, 25.0, 29.99])
    assert len(set(capped)) == 4
    assert all(20.0 <= d <= 30.0 for d in capped)
    # The window slides under the cap continuously: 8 s * 1.5 = 12 s passes the 10 s cap.
    policy = ReconnectPolicy(max_delay=10.0, jitter=0.5)
    assert policy.delay(1.0, 3, 0.0) == pytest.approx(10.0 / 1.5)
    assert policy.delay(1.0, 3, 0.999) == pytest.approx(10.0 * 1.4995 / 1.5)
    assert policy.delay(1.0, 2, 0.999) == pytest.approx(4 * 1.4995)  # 6 s window: uncapped


@given(
    base=st.floats(min_value=0, max_value=120),
    failures=st.integers(min_value=0, max_value=200),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    cap=st.floats(min_value=0, max_value=300),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_delay_is_always_between_the_retry_and_the_cap(
    base: float, failures: int, rand: float, cap: float, jitter: float
) -> None:
    policy = ReconnectPolicy(max_delay=cap, jitter=jitter)
    delay = policy.delay(base, failures, rand)
    base_floor = max(base, MIN_FAILED_RETRY) if failures else base
    assert base <= delay <= (base * (1 + jitter) if base >= cap else cap)
    assert policy.delay(base, failures + 1, rand) >= delay  # never shrinks while failing
    # Not below the plain backoff, except inside the window the jitter keeps under the cap.
    grown = base_floor * policy.multiplier ** min(failures, 64)
    assert delay >= min(grown, cap / (1 + jitter)) * (1 - 1e-9)


# -- machine -------------------------------------------------------------------------------------


def test_initial_state() -> None:
    machine = ReconnectMachine()
    assert machine.ready_state is ReadyState.CONNECTING
    assert machine.last_event_id == ""
    assert machine.reconnection_time == 3.0
    assert machine.failures == 0
    assert machine.request_headers() == {}


def test_last_event_id_header_is_utf8_and_only_when_non_empty() -> None:
    machine = ReconnectMachine(last_event_id="\u2026")
    assert machine.request_headers() == {"Last-Event-ID": b"\xe2\x80\xa6"}
    machine.on_progress("", None)
    assert machine.request_headers() == {}


@pytest.mark.parametrize("bad", ["a\0b", "a\nb", "a\rb"])
def test_seed_id_with_nul_cr_or_lf_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        ReconnectMachine(last_event_id=bad)


def test_open_announces_and_resets_the_backoff() -> None:
    machine = ReconnectMachine(random=zero)
    machine.on_disconnect()
    machine.on_disconnect()
    assert machine.failures == 2
    decision = machine.on_response(200, "text/event-stream; charset=utf-8")
    assert decision.action is Action.OPEN
    assert machine.ready_state is ReadyState.OPEN
    assert machine.failures == 0


def test_204_closes_without_error() -> None:
    machine = ReconnectMachine()
    decision = machine.on_response(204, None)
    assert decision.action is Action.CLOSE
    assert decision.error is None
    assert machine.closed
    assert machine.on_disconnect().action is Action.CLOSE


@pytest.mark.parametrize("status", [201, 205, 210, 299, 301, 400, 404, 410, 429, 500, 503])
def test_other_statuses_fail(status: int) -> None:
    machine = ReconnectMachine()
    decision = machine.on_response(status, "text/event-stream")
    assert decision.action is Action.FAIL
    assert isinstance(decision.error, ConnectionFailed)
    assert decision.error.status_code == status
    assert str(status) in str(decision.error)
    assert machine.ready_state is ReadyState.CLOSED
    assert machine.on_disconnect().action is Action.CLOSE


@pytest.mark.parametrize("content_type", [None, "text/html", "text/event-streamx"])
def test_wrong_content_type_fails(content_type: str | None) -> None:
    machine = ReconnectMachine()
    decision = machine.on_response(200, content_type)
    assert decision.action is Action.FAIL
    assert decision.error is not None
    assert decision.error.status_code == 200
    assert "text/event-stream" in str(decision.error)
    assert machine.closed


def test_retry_statuses_reconnect_with_backoff() -> None:
    policy = ReconnectPolicy(initial_retry=1.0, jitter=0.0, retry_statuses=RETRYABLE_STATUSES)
    machine = ReconnectMachine(policy)
    delays = []
    for status in (503, 429, 502, 504):
        decision = machine.on_response(status, "text/html")
        assert decision.action is Action.RECONNECT
        assert machine.ready_state is ReadyState.CONNECTING
        delays.append(decision.delay)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert machine.on_response(500, "text/html").action is Action.FAIL


def test_retry_after_is_a_floor_bounded_by_the_cap() -> None:
    policy = ReconnectPolicy(initial_retry=1.0, max_delay=20.0, jitter=0.0, retry_statuses={503})  # type: ignore[arg-type]
    machine = ReconnectMachine(policy)
    assert machine.on_response(503, None, retry_after="7").delay == 7.0
    assert machine.on_response(503, None, retry_after="9999").delay == 20.0
    assert machine.on_response(503, None, retry_after="Wed, 21 Oct 2015").delay == 4.0
    assert machine.on_response(503, None, retry_after="-3").delay == 8.0


def test_progress_tracks_id_and_retry() -> None:
    machine = ReconnectMachine()
    machine.on_progress("42", 50)
    assert machine.last_event_id == "42"
    assert machine.reconnection_time == 0.05
    machine.on_progress("43", None)  # no retry field on this connection: keep the old one
    assert machine.reconnection_time == 0.05
    assert machine.request_headers() == {"Last-Event-ID": b"43"}


def test_disconnect_delays_follow_retry_backoff_and_reset() -> None:
    policy = ReconnectPolicy(initial_retry=0.5, max_delay=3.0, jitter=0.0)
    machine = ReconnectMachine(policy)
    machine.on_response(200, "text/event-stream")
    first = machine.on_disconnect()
    assert first.action is Action.RECONNECT
    assert machine.ready_state is ReadyState.CONNECTING
    failing = [machine.on_disconnect().delay for _ in range(5)]
    assert [first.delay, *failing] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    machine.on_response(200, "text/event-stream")
    machine.on_progress("1", 100)  # the server lowers the reconnection time
    assert [machine.on_disconnect().delay for _ in range(3)] == [0.1, 0.2, 0.4]


def test_jitter_uses_the_random_source() -> None:
    policy = ReconnectPolicy(initial_retry=1.0, max_delay=100.0, jitter=0.5)
    machine = ReconnectMachine(policy, random=sequence(0.0, 0.5, 0.25))
    assert [machine.on_disconnect().delay for _ in range(3)] == [1.0, 2.5, 4.5]


def test_capped_delays_are_deterministic_under_the_random_source() -> None:
    policy = ReconnectPolicy(initial_retry=1.0, max_delay=4.0, jitter=1.0)
    rands = (0.5, 0.0, 0.5, 0.0, 0.75)
    machine = ReconnectMachine(policy, random=sequence(*rands))
    delays = [machine.on_disconnect().delay for _ in rands]
    # 1.5, then windows 4, 8, 16, 32 capped at 4: [2, 4] picked by the random source.
    assert delays == [1.5, 2.0, 3.0, 2.0, 3.5]
    machine = ReconnectMachine(policy, random=sequence(*rands))
    assert [machine.on_disconnect().delay for _ in rands] == delays


def test_interrupted_reconnects_at_once_without_counting_a_failure() -> None:
    machine = ReconnectMachine(random=zero)
    machine.on_response(200, "text/event-stream")
    decision = machine.on_interrupted()
    assert decision == decision.__class__(Action.RECONNECT, 0.0)
    assert machine.failures == 0
    assert machine.ready_state is ReadyState.CONNECTING


def test_fail_closes_with_the_given_error() -> None:
    machine = ReconnectMachine()
    error = ConnectionFailed("redirect loop")
    decision = machine.fail(error)
    assert decision.action is Action.FAIL
    assert decision.error is error
    assert machine.fail(ConnectionFailed("again")).action is Action.CLOSE


@pytest.mark.parametrize(
    "observe",
    [
        lambda m: m.on_response(200, "text/event-stream"),
        lambda m: m.on_response(503, None),
        lambda m: m.on_disconnect(),
        lambda m: m.on_interrupted(),
        lambda m: m.fail(ConnectionFailed("x")),
    ],
)
def test_after_close_every_observation_closes(observe) -> None:  # type: ignore[no-untyped-def]
    machine = ReconnectMachine(ReconnectPolicy(retry_statuses=frozenset({503})))
    machine.close()
    assert observe(machine).action is Action.CLOSE
    assert machine.ready_state is ReadyState.CLOSED


def test_every_state_and_observation_pair() -> None:
    """Exhaustive: from each reachable state, each observation lands in the documented state."""
    observations = {
        "open": (lambda m: m.on_response(200, "text/event-stream"), ReadyState.OPEN),
        "204": (lambda m: m.on_response(204, None), ReadyState.CLOSED),
        "404": (lambda m: m.on_response(404, None), ReadyState.CLOSED),
        "503-retry": (lambda m: m.on_response(503, None), ReadyState.CONNECTING),
        "disconnect": (lambda m: m.on_disconnect(), ReadyState.CONNECTING),
        "interrupted": (lambda m: m.on_interrupted(), ReadyState.CONNECTING),
        "close": (lambda m: m.close(), ReadyState.CLOSED),
    }
    setups = {
        ReadyState.CONNECTING: [],
        ReadyState.OPEN: ["open"],
        ReadyState.CLOSED: ["close"],
    }
    for (state, setup), (name, (observe, expected)) in itertools.product(
        setups.items(), observations.items()
    ):
        machine = ReconnectMachine(ReconnectPolicy(retry_statuses=frozenset({503})), random=zero)
        for step in setup:
            observations[step][0](machine)
        assert machine.ready_state is state
        observe(machine)
        want = ReadyState.CLOSED if state is ReadyState.CLOSED else expected
        assert machine.ready_state is want, (state, name)


def test_a_retry_below_the_cap_never_takes_the_delay_above_it() -> None:
    # The jitter added above a retry: of 29 s went past the 30 s cap for most clients.
    policy = ReconnectPolicy(max_delay=30.0)
    delays = [policy.delay(29.0, 0, rand / 100) for rand in range(100)]
    assert all(29.0 <= delay <= 30.0 for delay in delays)
    assert len(set(delays)) > 50  # still spread
