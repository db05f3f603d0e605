"""Callback listeners in worker pools: ordered/unordered, failures, saturation, processes."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import anyio
import anyio.from_thread
import pytest

from ssehub import BrokerClosed, ConfigurationError
from ssehub.channels import Channel, Message, WorkerPool
from ssehub.channels._worker_output import MAX_OUTPUT_CHARS, MAX_RECORDS

pytestmark = pytest.mark.anyio


def refuse_parent_process(message: Message) -> None:
    # Module level: a process pool pickles the callable by reference.
    if os.getpid() == message.payload["parent"]:
        raise RuntimeError("ran in the parent process")


def exit_on_odd(message: Message) -> None:
    if message.payload % 2:
        sys.exit(3)


def fail_on_odd(message: Message) -> None:
    if message.payload % 2:
        raise ValueError(f"odd: {message.payload}")


def chatty(message: Message) -> None:
    log = logging.getLogger("tests.worker")
    log.debug("hidden %s", message.payload)  # below the parent's level for this logger
    log.info("got %s", message.payload)
    print("printed", message.payload)
    print("on stderr", message.payload, file=sys.stderr)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("handled")
    if message.payload == "fail":
        raise ValueError("callback broke")


def flood(message: Message) -> None:
    log = logging.getLogger("tests.worker")
    for n in range(MAX_RECORDS + 5):
        log.warning("line %d", n)
    print("x" * (MAX_OUTPUT_CHARS + 10))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_workers_is_validated(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        WorkerPool(max_workers=bad)


async def test_pool_must_be_running() -> None:
    async with Channel("c") as channel:
        with pytest.raises(BrokerClosed):
            WorkerPool().attach(channel, print, ordered=True)


async def test_ordered_processes_one_at_a_time_in_order() -> None:
    seen: list[int] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def record(message: Message) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        seen.append(message.payload)
        with lock:
            running -= 1

    with anyio.fail_after(10):
        async with Channel("c") as channel, WorkerPool(max_workers=4) as pool:
            handle = pool.attach(channel, record, ordered=True, id="w")
            assert handle.listener.id == "w"
            for n in range(50):
                await channel.broadcast(Message("n", n))
            await channel.dispatch("w", Message.end())
            await handle.wait()
    assert seen == list(range(50))
    assert most == 1
    assert handle.done
    assert handle.statistics() == (50, 0, 0, 0)
    assert "w" not in channel  # removed when its stream ended


async def test_unordered_runs_up_to_max_workers_at_once() -> None:
    max_workers = 3
    inside = 0
    most = 0
    lock = threading.Lock()
    all_in = threading.Event()
    release = threading.Event()

    def block(message: Message) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            if inside == max_workers:
                all_in.set()
        release.wait(10)
        with lock:
            inside -= 1

    with anyio.fail_after(10):
        async with Channel("c") as channel, WorkerPool(max_workers=max_workers) as pool:
            handle = pool.attach(channel, block, ordered=False)
            for n in range(10):
                await channel.broadcast(Message("n", n))
            await anyio.to_thread.run_sync(all_in.wait, 10)
            assert handle.statistics().in_flight == max_workers
            # Saturated: the rest waits in the listener's bounded queue, not in the pool.
            listener = handle.listener
            assert listener.statistics().queued + len(listener._buffer) == 10 - max_workers
            release.set()
            handle.listener.stop()
            await handle.wait()
    assert most == max_workers
    assert handle.statistics().processed == 10


async def test_failures_are_logged_counted_and_processing_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ssehub.channels")
    with anyio.fail_after(10):
        async with Channel("c") as channel, WorkerPool(max_workers=2) as pool:
            ordered = pool.attach(channel, fail_on_odd, ordered=True)
            unordered = pool.attach(channel, fail_on_odd, ordered=False)
            for n in range(6):
                await channel.broadcast(Message("n", n))
            await channel.broadcast(Message.end())
            await ordered.wait()
            await unordered.wait()
    assert ordered.statistics()[:2] == (3, 3)
    assert unordered.statistics()[:2] == (3, 3)
    assert pool.statistics()[:2] == (6, 6)
    failures = [r for r in caplog.records if "failed on message" in r.getMessage()]
    assert len(failures) == 6
    assert all(r.exc_info is not None for r in failures)


async def test_saturation_applies_drop_oldest_and_counts_losses() -> None:
    release = threading.Event()
    started = threading.Event()
    seen: list[int] = []

    def slow(message: Message) -> None:
        started.set()
        release.wait(10)
        seen.append(message.payload)

    with anyio.fail_after(10):
        async with (
            Channel("c", queue_size=2, overflow="drop_oldest") as channel,
            WorkerPool(max_workers=1) as pool,
        ):
            handle = pool.attach(channel, slow, ordered=True)
            await channel.broadcast(Message("n", 0))
            await anyio.to_thread.run_sync(started.wait, 10)
            for n in range(1, 8):  # the worker is busy: the queue (2) overflows
                await channel.broadcast(Message("n", n))
            assert handle.listener.statistics().queued == 2
            release.set()
            await channel.broadcast(Message.end())
            await handle.wait()
    assert seen == [0, 6, 7]
    assert handle.statistics() == (3, 0, 5, 0)


async def test_saturation_with_block_policy_holds_senders_back() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(message: Message) -> None:
        started.set()
        release.wait(10)

    with anyio.fail_after(10):
        async with (
            Channel("c", queue_size=1, overflow="block") as channel,
            WorkerPool(max_workers=1) as pool,
        ):
            handle = pool.attach(channel, slow, ordered=True)
            await channel.broadcast(Message("n", 0))
            await anyio.to_thread.run_sync(started.wait, 10)
            await channel.broadcast(Message("n", 1))  # fills the queue of 1
            sent = anyio.Event()

            async def send() -> None:
                await channel.broadcast(Message("n", 2))
                sent.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                assert not sent.is_set()  # back-pressure: the sender waits for room
                release.set()
                await sent.wait()
            await channel.broadcast(Message.end())
            await handle.wait()
    assert handle.statistics() == (3, 0, 0, 0)


async def test_process_pool_runs_callbacks_in_other_processes() -> None:
    with anyio.fail_after(60):
        async with Channel("c") as channel, WorkerPool(max_workers=2, processes=True) as pool:
            handle = pool.attach(channel, refuse_parent_process, ordered=True, id="children")
            failing = pool.attach(channel, fail_on_odd, ordered=False)
            for n in range(1, 4):
                await channel.dispatch("children", Message("n", {"parent": os.getpid()}))
                await channel.dispatch(failing.listener.id, Message("n", n))
            await channel.broadcast(Message.end())
            await handle.wait()
            await failing.wait()
    assert handle.statistics() == (3, 0, 0, 0)
    assert failing.statistics()[:2] == (1, 2)


async def test_pool_exit_removes_its_listeners() -> None:
    async with Channel("c") as channel:
        async with WorkerPool() as pool:
            handle = pool.attach(channel, print, ordered=True)
            assert handle.listener.id in channel
        assert handle.listener.id not in channel
        assert handle.done


async def test_process_callbacks_logs_and_prints_reach_the_parent(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="tests.worker")
    with anyio.fail_after(60):
        async with Channel("c") as channel, WorkerPool(max_workers=1, processes=True) as pool:
            handle = pool.attach(channel, chatty, ordered=True)
            await channel.broadcast(Message("n", "ok"))
            await channel.broadcast(Message("n", "fail"))
            await channel.broadcast(Message.end())
            await handle.wait()
    assert handle.statistics()[:2] == (1, 1)
    worker = [r for r in caplog.records if r.name == "tests.worker"]
    assert [r.getMessage() for r in worker] == ["got ok", "handled", "got fail", "handled"]
    assert {r.process for r in worker} != {os.getpid()}  # logged in the worker process
    assert "ZeroDivisionError" in (worker[1].exc_text or "")  # its traceback travelled as text
    [failure] = [r for r in caplog.records if "failed on message" in r.getMessage()]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], ValueError)
    if sys.version_info >= (3, 11):  # the worker's traceback, as a note
        assert "in chatty" in caplog.text
    out, err = capsys.readouterr()
    assert out == "printed ok\nprinted fail\n"
    assert err == "on stderr ok\non stderr fail\n"


async def test_process_callback_output_is_bounded(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(60):
        async with Channel("c") as channel, WorkerPool(max_workers=1, processes=True) as pool:
            handle = pool.attach(channel, flood, ordered=True)
            await channel.dispatch(handle.listener.id, Message("n", 1))
            await channel.dispatch(handle.listener.id, Message.end())
            await handle.wait()
    assert handle.statistics()[:2] == (1, 0)
    lines = [r for r in caplog.records if r.name == "tests.worker"]
    assert len(lines) == MAX_RECORDS
    assert lines[-1].getMessage() == f"line {MAX_RECORDS - 1}"
    assert "5 records dropped" in caplog.text
    out = capsys.readouterr().out
    assert out.startswith("x" * MAX_OUTPUT_CHARS + "\n[ssehub: 11 more characters")


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
async def test_a_callback_calling_sys_exit_is_a_failure_like_any_other(
    processes: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # SystemExit is no Exception: it used to end the pool, every other listener and the
    # caller's block (and, uncaught, the process).
    caplog.set_level(logging.ERROR, logger="ssehub.channels")
    with anyio.fail_after(60):
        async with Channel("c") as channel, WorkerPool(max_workers=2, processes=processes) as pool:
            exiting = pool.attach(channel, exit_on_odd, ordered=True)
            other = pool.attach(channel, fail_on_odd, ordered=True)
            for n in range(4):
                await channel.broadcast(Message("n", n))
            await channel.broadcast(Message.end())
            await exiting.wait()
            await other.wait()
    assert exiting.statistics()[:2] == (2, 2)
    assert other.statistics()[:2] == (2, 2)


async def test_a_listener_removed_before_its_consumer_ran_ends_alone() -> None:
    with anyio.fail_after(10):
        async with Channel("c") as channel, WorkerPool() as pool:
            received: list[Any] = []
            kept = pool.attach(channel, received.append, ordered=True)
            gone = pool.attach(channel, received.append, ordered=True)
            channel.remove_listener(gone.listener.id)  # before its consumer task ran
            await gone.wait()
            await channel.broadcast(Message("n", 1))
            await channel.broadcast(Message.end())
            await kept.wait()  # the pool and the other consumer carry on
    assert received == [Message("n", 1)]
    assert gone.statistics() == (0, 0, 0, 0)


async def test_ended_listeners_are_not_kept_but_still_counted() -> None:
    with anyio.fail_after(10):
        async with Channel("c") as channel, WorkerPool() as pool:
            handles = []
            for n in range(50):
                handle = pool.attach(channel, fail_on_odd, ordered=True)
                await channel.dispatch(handle.listener.id, Message("n", n))
                await channel.dispatch(handle.listener.id, Message.end())
                handles.append(handle)
            for handle in handles:
                await handle.wait()
            assert pool._listeners == {}  # the handles of ended listeners are let go
            assert pool.statistics() == (25, 25, 0, 0)
