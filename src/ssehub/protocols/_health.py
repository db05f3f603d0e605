"""Health monitoring: periodic component checks with thresholds, reports and alerts.

Each :class:`HealthCheck` probes one component and returns a number (latency in ms, queue depth,
error rate, ...). Its :class:`Thresholds` classify the number as healthy, warning or critical; a
probe that raises, times out or returns a value that is not a finite number (NaN, an infinity)
is critical. Every round produces a :class:`HealthReport` (overall
status = the worst component), and every change of a component's status produces a
:class:`HealthAlert` (including recoveries).

Subscribers receive alerts in order and reports conflated to the latest one (a report is state,
alerts are events). A new subscriber gets the current report first, then what happens next.
Rounds run every ``interval`` seconds on an injectable :class:`ssehub._clock.Clock`, inside the
task group of ``async with HealthMonitor(...)``.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, ProtocolError
from .._excgroups import exit_task_group
from ..wire import ServerSentEvent
from ._schema import EventProtocol

__all__ = [
    "HEALTH_ALERT",
    "HEALTH_PROTOCOL",
    "HEALTH_REPORT",
    "ComponentHealth",
    "HealthAlert",
    "HealthCheck",
    "HealthMonitor",
    "HealthReport",
    "HealthStatus",
    "HealthSubscription",
    "Thresholds",
]


class HealthStatus(str, enum.Enum):
    """A component's status, from best to worst."""

    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for healthy, 1 for warning, 2 for critical."""
        return list(HealthStatus).index(self)


@dataclass(frozen=True)
class Thresholds:
    """Where a probe's value turns warning and critical.

    Args:
        warning: the value at which the component is in warning.
        critical: the value at which it is critical.
        higher_is_worse: ``True`` for latencies and error rates, ``False`` for free disk space
            or available connections (then the thresholds are lower bounds).

    Raises:
        ConfigurationError: a threshold is NaN, or they are in the wrong order for
            ``higher_is_worse``. (An infinite threshold is allowed: that level is never reached.)
    """

    warning: float
    critical: float
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        if math.isnan(self.warning) or math.isnan(self.critical):
            raise ConfigurationError("health thresholds must not be NaN")
        ordered = (
            self.warning <= self.critical
            if self.higher_is_worse
            else (self.warning >= self.critical)
        )
        if not ordered:
            raise ConfigurationError("the warning threshold must come before the critical one")

    def classify(self, value: float) -> HealthStatus:
        """The status of ``value``; a value that is not a finite number is critical.

        NaN compares false with everything, so without this check it would fall through every
        threshold and look healthy. An infinity is refused too, in both directions: no real
        latency, queue depth or free space is infinite, so it means the probe could not measure
        (a division by zero, an empty sample), and a component that cannot be measured must
        not look healthy.
        """
        if not math.isfinite(value):
            return HealthStatus.CRITICAL
        sign = 1.0 if self.higher_is_worse else -1.0
        if sign * value >= sign * self.critical:
            return HealthStatus.CRITICAL
        if sign * value >= sign * self.warning:
            return HealthStatus.WARNING
        return HealthStatus.HEALTHY


@dataclass(frozen=True)
class HealthCheck:
    """One component to probe.

    Attributes:
        name: the component's name.
        probe: an async callable returning the measured value.
        thresholds: how to classify the value.
        unit: the value's unit, for messages (``"ms"``, ``"%"``).
        timeout: seconds a probe may take before the component counts as critical.
    """

    name: str
    probe: Callable[[], Awaitable[float]]
    thresholds: Thresholds
    unit: str = ""
    timeout: float = 5.0


@dataclass(frozen=True)
class ComponentHealth:
    """The result of one probe: status, value (``None`` when the probe failed, timed out or
    returned a non-finite number) and message."""

    name: str
    status: HealthStatus
    value: float | None
    message: str = ""


@dataclass(frozen=True)
class HealthReport:
    """One round of checks.

    Attributes:
        seq: the event id (shared, increasing, with the alerts).
        status: the worst component status.
        components: every component's result, in the order of the checks.
        checked_at: when the round ran, wall-clock: seconds since the Unix epoch (UTC), as
            :func:`time.time` gives them, so clients can display it
            (``datetime.fromtimestamp(checked_at, timezone.utc)``, or ``new Date(checked_at *
            1000)`` in JavaScript). Rounds are scheduled on the monitor's clock, not on this.
    """

    seq: int
    status: HealthStatus
    components: list[ComponentHealth]
    checked_at: float


@dataclass(frozen=True)
class HealthAlert:
    """A component changed status (a recovery to healthy is an alert too)."""

    seq: int
    component: str
    previous: HealthStatus
    current: HealthStatus
    value: float | None
    message: str


HEALTH_PROTOCOL = EventProtocol(
    "health", ["1"], features=["batching"], description="component health (ssehub)"
)
"""A ready-made protocol with the kinds ``health.report`` and ``health.alert``."""
HEALTH_REPORT = HEALTH_PROTOCOL.kind("health.report", HealthReport)
HEALTH_ALERT = HEALTH_PROTOCOL.kind("health.alert", HealthAlert)


class HealthMonitor:
    """Runs health checks every ``interval`` seconds and fans results out to subscribers.

    Args:
        checks: the components to probe (names must be unique).
        interval: seconds between the starts of two rounds (default 10 s: frequent enough for
            dashboards, rare enough that probes cost nothing).
        clock: the time source of the interval (default: the system clock).
        max_alerts: alerts kept for subscribers that fall behind; beyond it the oldest are
            dropped (bounded memory).

    Raises:
        ConfigurationError: no checks, duplicate names, or a non-positive interval.
    """

    def __init__(
        self,
        checks: Sequence[HealthCheck],
        *,
        interval: float = 10.0,
        clock: Clock | None = None,
        max_alerts: int = 100,
    ) -> None:
        names = [c.name for c in checks]
        if not names or len(set(names)) != len(names):
            raise ConfigurationError("health checks need unique names (and at least one)")
        if not interval > 0:
            raise ConfigurationError("interval must be positive")
        self.checks = tuple(checks)
        self.interval = interval
        self.clock: Clock = clock or SystemClock()
        self._alerts: deque[HealthAlert] = deque(maxlen=max_alerts)
        self._report: HealthReport | None = None
        self._seq = 0
        self._changed: anyio.Event | None = None
        self._closed = False
        self._tg: TaskGroup | None = None

    @property
    def current(self) -> HealthReport | None:
        """The latest report, or ``None`` before the first round."""
        return self._report

    async def _probe(self, check: HealthCheck) -> ComponentHealth:
        try:
            with anyio.fail_after(check.timeout):
                value = float(await check.probe())
        except TimeoutError:
            return ComponentHealth(check.name, HealthStatus.CRITICAL, None, "probe timed out")
        except Exception as exc:  # noqa: BLE001 - a failing probe *is* a critical component
            return ComponentHealth(
                check.name, HealthStatus.CRITICAL, None, f"probe failed: {type(exc).__name__}"
            )
        if not math.isfinite(value):
            # Critical, with no value: JSON has no NaN or infinity (the report could not even
            # be encoded), and the message says what the probe returned.
            return ComponentHealth(
                check.name,
                HealthStatus.CRITICAL,
                None,
                f"probe returned a non-finite value ({value})",
            )
        status = check.thresholds.classify(value)
        return ComponentHealth(check.name, status, value, f"{value:g}{check.unit}")

    async def check_once(self) -> HealthReport:
        """Run every probe concurrently, publish alerts for status changes, then the report.

        Returns:
            The new report.

        Raises:
            ProtocolError: the monitor is closed.
        """
        if self._closed:
            raise ProtocolError("the health monitor is closed")
        results: dict[str, ComponentHealth] = {}

        async def run(check: HealthCheck) -> None:
            results[check.name] = await self._probe(check)

        async with anyio.create_task_group() as tg:
            for check in self.checks:
                tg.start_soon(run, check)
        components = [results[c.name] for c in self.checks]
        before = {c.name: c.status for c in (self._report.components if self._report else [])}
        for component in components:
            previous = before.get(component.name, HealthStatus.HEALTHY)
            if component.status is not previous:
                self._seq += 1
                self._alerts.append(
                    HealthAlert(
                        self._seq,
                        component.name,
                        previous,
                        component.status,
                        component.value,
                        f"{component.name}: {previous.value} -> {component.status.value}"
                        f" ({component.message})",
                    )
                )
        self._seq += 1
        worst = max((c.status for c in components), key=lambda s: s.rank)
        # Wall-clock for display; the monitor's clock (monotonic, or a test's manual clock)
        # schedules the rounds and would mean nothing to a client.
        self._report = HealthReport(self._seq, worst, components, time.time())
        self._wake()
        return self._report

    async def _loop(self) -> None:
        next_round = self.clock.time()
        # Not `while True`: a block that leaves before this task first runs closes the monitor
        # first, and check_once() refuses a closed monitor.
        while not self._closed:
            await self.check_once()
            next_round += self.interval
            await self.clock.sleep_until(next_round)

    async def __aenter__(self) -> HealthMonitor:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        self.close()
        try:
            return await exit_task_group(self._tg, exc_type, exc, tb)
        finally:
            self._tg = None

    def close(self) -> None:
        """End every subscription once it has delivered what is pending."""
        self._closed = True
        self._wake()

    def subscribe(self) -> HealthSubscription:
        """Follow the monitor: the current report first, then alerts and newer reports."""
        return HealthSubscription(self)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()


class HealthSubscription:
    """Cancellation-safe stream of :class:`HealthReport` and :class:`HealthAlert`, by ``seq``."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self._monitor = monitor
        # Alerts from before the subscription are history; the current report summarises them.
        self._alert_cursor = monitor._seq
        self._report_cursor = 0

    def _next(self) -> HealthReport | HealthAlert | None:
        alerts = [a for a in self._monitor._alerts if a.seq > self._alert_cursor]
        report = self._monitor._report
        if (
            report is not None
            and report.seq > self._report_cursor
            and (not alerts or report.seq < alerts[0].seq)
        ):
            return report
        return alerts[0] if alerts else None

    async def receive(self) -> HealthReport | HealthAlert:
        """Return the next alert or report, waiting if needed.

        Raises:
            anyio.EndOfStream: the monitor is closed and everything pending was delivered.
        """
        while True:
            item = self._next()
            if isinstance(item, HealthReport):
                self._report_cursor = item.seq
                self._alert_cursor = max(self._alert_cursor, item.seq)
                return item
            if isinstance(item, HealthAlert):
                self._alert_cursor = item.seq
                return item
            if self._monitor._closed:
                raise anyio.EndOfStream
            await self._monitor._wait_changed()

    def __aiter__(self) -> AsyncIterator[HealthReport | HealthAlert]:
        return self

    async def __anext__(self) -> HealthReport | HealthAlert:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    @staticmethod
    def encode(item: HealthReport | HealthAlert) -> ServerSentEvent:
        """Encode an item as a ``health.report`` or ``health.alert`` event (id = its seq)."""
        if isinstance(item, HealthReport):
            return HEALTH_REPORT.encode(item, id=item.seq)
        return HEALTH_ALERT.encode(item, id=item.seq)
