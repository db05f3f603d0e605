"""Health monitoring: thresholds, alerts on status changes, periodic rounds on a manual clock."""

from __future__ import annotations

import math
import sys
import time

import anyio
import pytest

from ssehub import ConfigurationError, ProtocolError
from ssehub.protocols import (
    HEALTH_PROTOCOL,
    HealthAlert,
    HealthCheck,
    HealthMonitor,
    HealthReport,
    HealthStatus,
    HealthSubscription,
    Thresholds,
)
from ssehub.testing import ManualClock
from ssehub.wire import parse

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


class Probe:
    """A probe whose next values the test scripts."""

    def __init__(self, *values: float | Exception) -> None:
        self.values = list(values)
        self.calls = 0

    async def __call__(self) -> float:
        self.calls += 1
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, Exception):
            raise value
        return value


def latency(probe: Probe, **kwargs: float) -> HealthCheck:
    return HealthCheck("db", probe, Thresholds(warning=100, critical=500), unit="ms", **kwargs)


def test_thresholds_classify_both_directions() -> None:
    up = Thresholds(warning=100, critical=500)
    assert [up.classify(v) for v in (0, 100, 499, 500)] == [
        HealthStatus.HEALTHY,
        HealthStatus.WARNING,
        HealthStatus.WARNING,
        HealthStatus.CRITICAL,
    ]
    down = Thresholds(warning=20, critical=5, higher_is_worse=False)  # e.g. free disk %
    assert [down.classify(v) for v in (50, 20, 6, 5)] == [
        HealthStatus.HEALTHY,
        HealthStatus.WARNING,
        HealthStatus.WARNING,
        HealthStatus.CRITICAL,
    ]
    with pytest.raises(ConfigurationError):
        Thresholds(warning=500, critical=100)
    with pytest.raises(ConfigurationError):
        Thresholds(warning=5, critical=20, higher_is_worse=False)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("higher_is_worse", [True, False])
def test_non_finite_values_are_critical_never_healthy(value: float, higher_is_worse: bool) -> None:
    thresholds = (
        Thresholds(100, 500) if higher_is_worse else Thresholds(20, 5, higher_is_worse=False)
    )
    assert thresholds.classify(value) is HealthStatus.CRITICAL


def test_nan_thresholds_are_refused() -> None:
    for warning, critical in ((math.nan, 5), (5, math.nan)):
        with pytest.raises(ConfigurationError, match="NaN"):
            Thresholds(warning, critical)
    assert Thresholds(100, math.inf).classify(10**9) is HealthStatus.WARNING  # never critical


@pytest.mark.anyio
async def test_a_probe_returning_nan_makes_an_encodable_critical_report_and_an_alert() -> None:
    monitor = HealthMonitor([latency(Probe(10, math.nan))])
    sub = monitor.subscribe()
    with anyio.fail_after(5):
        await monitor.check_once()
        assert (await sub.receive()).status is HealthStatus.HEALTHY
        report = await monitor.check_once()
        alert = await sub.receive()
        assert isinstance(alert, HealthAlert)
        assert (alert.previous, alert.current, alert.value) == (
            HealthStatus.HEALTHY,
            HealthStatus.CRITICAL,
            None,
        )
        assert await sub.receive() == report
    [component] = report.components
    assert (report.status, component.status, component.value) == (
        HealthStatus.CRITICAL,
        HealthStatus.CRITICAL,
        None,
    )
    assert "non-finite" in component.message
    # The report and the alert reach the wire (JSON has no NaN: a NaN value would not encode).
    for item in (report, alert):
        [message] = parse(HealthSubscription.encode(item).encode())
        assert HEALTH_PROTOCOL.decode(message).payload == item


def test_monitor_configuration_errors() -> None:
    check = latency(Probe(1))
    with pytest.raises(ConfigurationError):
        HealthMonitor([])
    with pytest.raises(ConfigurationError):
        HealthMonitor([check, check])
    with pytest.raises(ConfigurationError):
        HealthMonitor([check], interval=0)


@pytest.mark.anyio
async def test_alerts_on_status_changes_including_recovery() -> None:
    db = Probe(10, 150, 700, 20)
    cache = Probe(1)
    monitor = HealthMonitor(
        [latency(db), HealthCheck("cache", cache, Thresholds(warning=50, critical=90))]
    )
    sub = monitor.subscribe()
    with anyio.fail_after(5):
        first = await monitor.check_once()
        assert first.status is HealthStatus.HEALTHY
        assert [c.message for c in first.components] == ["10ms", "1"]
        assert await sub.receive() == first
        for expected in (HealthStatus.WARNING, HealthStatus.CRITICAL, HealthStatus.HEALTHY):
            report = await monitor.check_once()
            alert = await sub.receive()
            assert isinstance(alert, HealthAlert)
            assert (alert.component, alert.current) == ("db", expected)
            assert await sub.receive() == report
            assert report.status is expected
        assert alert.previous is HealthStatus.CRITICAL
        assert alert.message == "db: critical -> healthy (20ms)"


@pytest.mark.anyio
async def test_failing_and_slow_probes_are_critical() -> None:
    never = anyio.Event()

    async def hangs() -> float:
        await never.wait()
        return 0.0

    monitor = HealthMonitor(
        [
            latency(Probe(RuntimeError("refused"))),
            HealthCheck("queue", hangs, Thresholds(1, 2), timeout=0.01),
        ]
    )
    with anyio.fail_after(5):
        report = await monitor.check_once()
    assert report.status is HealthStatus.CRITICAL
    assert [(c.status, c.value, c.message) for c in report.components] == [
        (HealthStatus.CRITICAL, None, "probe failed: RuntimeError"),
        (HealthStatus.CRITICAL, None, "probe timed out"),
    ]


@pytest.mark.anyio
async def test_late_subscriber_gets_the_current_report_first_not_old_alerts() -> None:
    monitor = HealthMonitor([latency(Probe(700, 700, 10))])
    with anyio.fail_after(5):
        await monitor.check_once()  # an alert (healthy -> critical) and a report
        current = await monitor.check_once()
        late = monitor.subscribe()
        assert await late.receive() == current
        await monitor.check_once()
        alert = await late.receive()
        assert isinstance(alert, HealthAlert)
        assert alert.current is HealthStatus.HEALTHY


@pytest.mark.anyio
async def test_slow_subscriber_keeps_every_alert_but_only_the_latest_report() -> None:
    monitor = HealthMonitor([latency(Probe(10, 200, 700, 700))])
    sub = monitor.subscribe()
    with anyio.fail_after(5):
        for _ in range(4):
            last = await monitor.check_once()
        items = [await sub.receive() for _ in range(3)]
    assert [type(i).__name__ for i in items] == ["HealthAlert", "HealthAlert", "HealthReport"]
    assert items[2] == last
    assert [i.seq for i in items] == sorted(i.seq for i in items)


@pytest.mark.anyio
async def test_periodic_rounds_on_a_manual_clock_and_close() -> None:
    clock = ManualClock()
    probe = Probe(10)
    started = time.time()
    with anyio.fail_after(5):
        async with HealthMonitor([latency(probe)], interval=10, clock=clock) as monitor:
            sub = monitor.subscribe()
            first = await sub.receive()
            assert isinstance(first, HealthReport)
            assert probe.calls == 1
            while clock.sleepers == 0:
                await anyio.lowlevel.checkpoint()
            clock.advance(9.9)
            assert probe.calls == 1  # not yet due
            clock.advance(0.1)
            second = await sub.receive()
            assert isinstance(second, HealthReport)
            assert second.seq > first.seq
            # Wall-clock time for display, whatever clock schedules the rounds.
            assert started <= first.checked_at <= second.checked_at <= time.time()
        assert [i async for i in sub] == []  # leaving the block closed the subscriptions
    with pytest.raises(ProtocolError):
        await monitor.check_once()


@pytest.mark.anyio
async def test_events_encode_with_seq_ids_and_decode() -> None:
    monitor = HealthMonitor([latency(Probe(700))])
    sub = monitor.subscribe()
    with anyio.fail_after(5):
        report = await monitor.check_once()
        alert = await sub.receive()
    for item in (alert, report):
        event = HealthSubscription.encode(item)
        assert event.id == str(item.seq)
        [message] = parse(event.encode())
        assert HEALTH_PROTOCOL.decode(message).payload == item


@pytest.mark.anyio
async def test_error_in_the_block_comes_out_as_itself() -> None:
    with pytest.raises(ValueError, match="boom") as info:
        async with HealthMonitor([latency(Probe(10))]):
            raise ValueError("boom")
    assert not isinstance(info.value, BaseExceptionGroup)


@pytest.mark.anyio
async def test_leaving_before_the_first_round_is_quiet() -> None:
    probe = Probe(10)
    async with HealthMonitor([latency(probe)]) as monitor:
        pass
    assert monitor.current is None
    assert probe.calls == 0
