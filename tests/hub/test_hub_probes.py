"""``/health``, ``/livez``, ``/readyz``: the backend is really asked, once per period, never twice
at a time; liveness never asks it. Time is the broker's manual clock; pings are gated by events.
"""

from __future__ import annotations

import anyio
import httpx
import pytest

from ssehub.backends import MemoryBackend
from ssehub.broker import Broker
from ssehub.hub import create_app
from ssehub.hub._status import HEALTH_CHECK_CACHE, BackendCheck, backend_check
from ssehub.testing import ManualClock

from .conftest import client_for, hub_of

pytestmark = pytest.mark.anyio


class ProbedBackend(MemoryBackend):
    """A memory backend whose ``ping`` answers ``answer``, once ``gate`` is open."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = True
        self.healthy = True  # the no-I/O flag a Redis backend has
        self.pings = 0
        self.pinged = anyio.Event()
        self.gate: anyio.Event | None = None  # None: answer at once
        self.timeouts: list[float] = []

    async def ping(self, timeout: float) -> bool:
        self.pings += 1
        self.timeouts.append(timeout)
        self.pinged.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


async def _answer(http: httpx.AsyncClient, path: str) -> tuple[int, str]:
    response = await http.get(path)
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json()["status"]


async def test_a_probe_storm_costs_one_ping() -> None:
    backend = ProbedBackend()
    backend.gate = anyio.Event()
    clock = ManualClock()
    async with (
        Broker(backend, clock=clock) as broker,
        client_for(create_app(broker=broker)) as http,
    ):
        answers: list[tuple[int, str]] = []

        async def probe(path: str) -> None:
            answers.append(await _answer(http, path))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for index in range(40):
                    group.start_soon(probe, "/health" if index % 2 else "/readyz")
                await backend.pinged.wait()
                # Every probe is parked now: on the one ping in flight, none on a second one.
                await anyio.wait_all_tasks_blocked()
                assert backend.pings == 1
                backend.gate.set()
        assert backend.pings == 1
        assert sorted(set(answers)) == [(200, "ok"), (200, "ready")]
        assert len(answers) == 40
        assert backend.timeouts == [1.0]
        # The answer is reused for the cache period, then asked again.
        assert await _answer(http, "/health") == (200, "ok")
        assert backend.pings == 1
        clock.advance(HEALTH_CHECK_CACHE)
        assert await _answer(http, "/health") == (200, "ok")
        assert backend.pings == 2


async def test_a_backend_that_does_not_answer_is_degraded_and_not_ready() -> None:
    backend = ProbedBackend()
    clock = ManualClock()
    async with Broker(backend, clock=clock) as broker:
        app = create_app(broker=broker)
        async with client_for(app) as http:
            assert await _answer(http, "/readyz") == (200, "ready")
            backend.answer = False
            clock.advance(HEALTH_CHECK_CACHE)
            assert await _answer(http, "/health") == (200, "degraded")
            assert await _answer(http, "/readyz") == (503, "degraded")
            assert await _answer(http, "/livez") == (200, "alive")
            assert backend.pings == 2  # /readyz reused the answer of /health; /livez asks nothing
            scraped = (await http.get("/metrics")).text
            assert "ssehub_backend_up 0.0" in scraped
            assert (await http.get("/dashboard/stats")).json()["backend_up"] is False
            # Back: the next period's check says so.
            backend.answer = True
            clock.advance(HEALTH_CHECK_CACHE)
            assert await _answer(http, "/health") == (200, "ok")
            assert "ssehub_backend_up 1.0" in (await http.get("/metrics")).text


async def test_the_backend_flag_overrides_a_cached_answer_at_once() -> None:
    # A failed publish (or the Redis reader losing its connection) flips the backend's healthy
    # flag: /health follows without waiting for the cache period, in both directions.
    backend = ProbedBackend()
    broker = Broker(backend, clock=ManualClock())
    async with broker, client_for(create_app(broker=broker)) as http:
        assert await _answer(http, "/health") == (200, "ok")
        backend.healthy = False
        assert await _answer(http, "/health") == (200, "degraded")
        assert await _answer(http, "/readyz") == (503, "degraded")
        backend.healthy = True
        assert await _answer(http, "/readyz") == (200, "ready")
        assert backend.pings == 3  # one per change of the flag, none in between


async def test_draining_and_stopped_hubs() -> None:
    backend = ProbedBackend()
    async with Broker(backend, clock=ManualClock()) as broker:
        app = create_app(broker=broker)
        async with client_for(app) as http:
            hub_of(app).drain()
            assert await _answer(http, "/health") == (503, "draining")
            assert await _answer(http, "/readyz") == (503, "draining")
            assert await _answer(http, "/livez") == (200, "alive")  # no restart mid-shutdown
            assert backend.pings == 0  # a draining hub is not ready whatever the backend says
    # A hub whose broker never started: alive, not ready, and nothing pinged.
    async with client_for(create_app(broker=Broker(ProbedBackend()))) as http:
        assert await _answer(http, "/livez") == (200, "alive")
        assert await _answer(http, "/readyz") == (503, "unavailable")
        assert await _answer(http, "/health") == (503, "unavailable")


async def test_a_hanging_ping_is_cut_off_and_a_cancelled_caller_does_not_cancel_it() -> None:
    backend = ProbedBackend()
    backend.gate = anyio.Event()  # never opened: a backend that ignores its timeout
    async with Broker(backend) as broker:
        check = BackendCheck(broker, timeout=0.05)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(check.healthy)
                await backend.pinged.wait()
                group.cancel_scope.cancel()  # the caller goes away; the ping goes on, bounded
            assert not await check.healthy()  # the shared answer: False, after the grace
        assert backend.pings == 1
        assert check.last_answer is False


async def test_one_check_per_broker_and_memory_always_answers() -> None:
    async with Broker() as broker:
        assert backend_check(broker) is backend_check(broker)
        assert await backend_check(broker).healthy()
        assert await MemoryBackend().ping(0.01)


async def test_a_backend_without_ping_is_judged_by_its_flag() -> None:
    class LegacyBackend(MemoryBackend):
        ping = None  # written before ping() was part of the protocol
        healthy = False

    async with Broker(LegacyBackend()) as broker, client_for(create_app(broker=broker)) as http:
        assert await _answer(http, "/health") == (200, "degraded")
        assert await _answer(http, "/readyz") == (503, "degraded")
