"""Task progress: lifecycle, conflating subscriptions, late subscribers, run()."""

from __future__ import annotations

import gc
import random

import anyio
import pytest

from ssehub import ConfigurationError, ProtocolError, SchemaValidationError
from ssehub.protocols import (
    TASK_PROGRESS,
    BatchPolicy,
    ProgressBoard,
    ProgressOverrun,
    ProgressReporter,
    ProgressSubscription,
    TaskProgress,
    TaskState,
    batched,
)
from ssehub.testing import ManualClock
from ssehub.wire import parse

pytestmark = pytest.mark.anyio


async def test_lifecycle_and_single_task_subscription_ends_after_final_state() -> None:
    board = ProgressBoard()
    task = board.create("job", "queued")
    sub = board.subscribe("job")
    with anyio.fail_after(5):
        first = await sub.receive()
        assert (first.state, first.message, first.seq) == (TaskState.PENDING, "queued", 1)
        task.start("go")
        assert (await sub.receive()).state is TaskState.RUNNING
        task.update(50, "half")
        got = await sub.receive()
        assert (got.percent, got.message) == (50.0, "half")
        task.complete("done")
        final = await sub.receive()
        assert (final.state, final.percent, final.seq) == (TaskState.COMPLETED, 100.0, 4)
        with pytest.raises(anyio.EndOfStream):
            await sub.receive()
        assert [s async for s in sub] == []


async def test_late_subscriber_gets_the_current_state_first_then_waits() -> None:
    board = ProgressBoard()
    task = board.create("job")
    task.update(10)
    task.update(20, "twenty")
    sub = board.subscribe("job")
    with anyio.fail_after(5):
        current = await sub.receive()
        assert (current.percent, current.message) == (20.0, "twenty")
        async with anyio.create_task_group() as tg:
            received: list[TaskProgress] = []

            async def wait_next() -> None:
                received.append(await sub.receive())

            tg.start_soon(wait_next)
            await anyio.wait_all_tasks_blocked()
            assert received == []  # no new state yet: the subscriber waits
            task.fail("boom")
        assert received[0].state is TaskState.FAILED
        assert (received[0].error, received[0].percent) == ("boom", 20.0)


async def test_slow_subscribers_are_conflated_and_many_subscribers_agree() -> None:
    board = ProgressBoard()
    task = board.create("job")
    subs = [board.subscribe("job") for _ in range(3)]
    for p in range(0, 101, 10):
        task.update(p)
    task.complete()
    with anyio.fail_after(5):
        for sub in subs:
            states = [s async for s in sub]
            # Intermediate updates were replaced; the final state is always delivered.
            assert [s.state for s in states] == [TaskState.COMPLETED]


async def test_all_tasks_subscription_orders_by_sequence_and_ends_on_close() -> None:
    board = ProgressBoard()
    a = board.create("a")
    b = board.create("b")
    a.update(10)
    sub = board.subscribe()
    with anyio.fail_after(5):
        first = [await sub.receive(), await sub.receive()]
        assert [(s.task_id, s.seq) for s in first] == [("b", 2), ("a", 3)]
        b.update(30)
        a.complete()
        board.close()
        rest = [s async for s in sub]
    assert [(s.task_id, s.state) for s in rest] == [
        ("b", TaskState.RUNNING),
        ("a", TaskState.COMPLETED),
    ]
    assert [s.task_id for s in board.tasks()] == ["b", "a"]
    assert board.last_seq == 5


async def test_run_marks_completion_and_failure_without_raising() -> None:
    board = ProgressBoard()

    async def good(reporter: ProgressReporter) -> None:
        reporter.update(50, "working")

    async def bad(reporter: ProgressReporter) -> None:
        reporter.update(30)
        raise RuntimeError("disk full")

    async def finishes_itself(reporter: ProgressReporter) -> None:
        reporter.complete("early")

    with anyio.fail_after(5):
        done = await board.run(good, task_id="good")
        failed = await board.run(bad, task_id="bad")
        early = await board.run(finishes_itself)
    assert (done.state, done.percent) == (TaskState.COMPLETED, 100.0)
    assert (failed.state, failed.error, failed.percent) == (
        TaskState.FAILED,
        "RuntimeError: disk full",
        30.0,
    )
    assert early.message == "early"
    assert len(early.task_id) == 32  # a random uuid hex


async def test_run_marks_cancellation_as_failure_and_propagates() -> None:
    board = ProgressBoard()
    reporter = board.create("job")
    started = anyio.Event()

    async def forever(r: ProgressReporter) -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: board.run(forever, reporter=reporter))
            await started.wait()
            tg.cancel_scope.cancel()
    assert board.get("job").state is TaskState.FAILED
    assert board.get("job").error == "cancelled"


async def test_invalid_transitions_and_values() -> None:
    board = ProgressBoard()
    task = board.create("job")
    with pytest.raises(ProtocolError):
        board.create("job")
    for bad in (-1, 101, float("nan"), float("inf"), 10**400, True, "50"):
        with pytest.raises(SchemaValidationError):
            task.update(bad)  # type: ignore[arg-type]
    task.complete()
    with pytest.raises(ProtocolError, match="already completed"):
        task.update(10)
    with pytest.raises(KeyError):
        board.subscribe("missing")
    board.close()
    with pytest.raises(ProtocolError):
        board.create("another")


async def test_finished_tasks_are_forgotten_beyond_the_bound() -> None:
    board = ProgressBoard(keep_finished=2)
    for name in "abc":
        board.create(name).complete()
    running = board.create("d")
    running.update(1)
    assert [s.task_id for s in board.tasks()] == ["b", "c", "d"]
    sub = board.subscribe("d")
    with anyio.fail_after(5):
        assert (await sub.receive()).task_id == "d"


async def test_keep_finished_zero_still_delivers_the_final_state_then_forgets() -> None:
    board = ProgressBoard(keep_finished=0)
    board.create("a")
    sub = board.subscribe("a")
    ProgressReporter(board, "a").complete()
    assert board.get("a").state is TaskState.COMPLETED  # kept: the subscriber has not seen it
    with anyio.fail_after(5):
        final = await sub.receive()
        assert final.state is TaskState.COMPLETED
        with pytest.raises(anyio.EndOfStream):
            await sub.receive()
    with pytest.raises(KeyError):
        board.get("a")  # delivered to everyone who follows it: forgotten


async def test_slow_all_tasks_subscriber_gets_every_completion() -> None:
    board = ProgressBoard(keep_finished=1)
    sub = board.subscribe()
    for name in "abc":
        board.create(name).complete(f"{name} done")
    with anyio.fail_after(5):
        got = [await sub.receive() for _ in range(3)]
    assert [(s.task_id, s.state) for s in got] == [(name, TaskState.COMPLETED) for name in "abc"]
    # Once delivered, the board is back to its bound.
    assert [s.task_id for s in board.tasks()] == ["c"]


async def test_ended_tasks_wait_for_the_slowest_subscriber_only() -> None:
    board = ProgressBoard(keep_finished=0)
    fast, slow, one = board.subscribe(), board.subscribe(), None
    board.create("a")
    one = board.subscribe("a")
    ProgressReporter(board, "a").complete()
    board.create("b").fail("boom")
    with anyio.fail_after(5):
        assert [(await fast.receive()).task_id for _ in range(2)] == ["a", "b"]
        assert {s.task_id for s in board.tasks()} == {"a", "b"}  # slow and one owe them
        assert (await slow.receive()).task_id == "a"
        assert {s.task_id for s in board.tasks()} == {"a", "b"}  # one still owes "a"
        assert (await one.receive()).state is TaskState.COMPLETED
        assert [s.task_id for s in board.tasks()] == ["b"]
        failed = await slow.receive()
    assert (failed.task_id, failed.state, failed.error) == ("b", TaskState.FAILED, "boom")
    assert board.tasks() == []


async def test_closed_or_dropped_subscriptions_stop_holding_tasks() -> None:
    board = ProgressBoard(keep_finished=0)
    closed, dropped = board.subscribe(), board.subscribe()
    board.create("a").complete()
    assert [s.task_id for s in board.tasks()] == ["a"]
    closed.close()
    assert [s.task_id for s in board.tasks()] == ["a"]  # dropped still owes it
    del dropped
    gc.collect()  # a subscription abandoned by a disconnected client
    board.create("b").complete()  # the next end looks again
    assert board.tasks() == []
    with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
        await closed.receive()


async def test_a_subscriber_too_far_behind_is_cut_off_and_memory_stays_bounded() -> None:
    board = ProgressBoard(keep_finished=1, max_unread=2)
    stalled = board.subscribe()
    follower = board.subscribe()
    with anyio.fail_after(5):
        for n in range(10):
            board.create(f"t{n}").complete()
            assert (await follower.receive()).task_id == f"t{n}"  # keeps up: never cut off
            ended = [s for s in board.tasks() if s.state.terminal]
            assert len(ended) <= board.keep_finished + board.max_unread
        for _ in range(2):  # a broken stream stays broken
            with pytest.raises(ProgressOverrun, match="too far behind"):
                await stalled.receive()
        board.close()
        assert [s async for s in follower] == []
    assert [s.task_id for s in board.tasks()] == ["t9"]


def test_negative_bounds_are_refused() -> None:
    for kwargs in ({"keep_finished": -1}, {"max_unread": -1}):
        with pytest.raises(ConfigurationError):
            ProgressBoard(**kwargs)


async def test_subscribe_after_resumes_from_a_sequence_number() -> None:
    board = ProgressBoard()
    for name in "abcd":
        board.create(name)  # seq 1..4
    with anyio.fail_after(5):
        resumed = board.subscribe(after=2)
        assert [(await resumed.receive()).seq for _ in range(2)] == [3, 4]
        # An id this board never sent (beyond the latest change): the current states.
        for stale in (99, -1):
            fresh = board.subscribe(after=stale)
            assert (await fresh.receive()).seq == 1
        # A single task whose final state the client already has: nothing to wait for.
        board.get("a")
        ProgressReporter(board, "a").complete()
        done = board.get("a").seq
        with pytest.raises(anyio.EndOfStream):
            await board.subscribe("a", after=done).receive()
        assert (await board.subscribe("a", after=done - 1).receive()).seq == done


async def test_a_subscription_resumed_after_a_final_state_does_not_hold_it() -> None:
    board = ProgressBoard(keep_finished=0)
    board.create("a")
    sub = board.subscribe(after=1)
    board.create("b")
    ProgressReporter(board, "a").complete()  # seq 3: sub still owes it
    assert {s.task_id for s in board.tasks()} == {"a", "b"}
    late = board.subscribe("a", after=3)  # already has a's final state: owes nothing
    ProgressReporter(board, "b").complete()
    with anyio.fail_after(5):
        # b's pending state (2) was conflated into its completion (4).
        assert [(await sub.receive()).seq for _ in range(2)] == [3, 4]
        with pytest.raises(anyio.EndOfStream):
            await late.receive()
    assert board.tasks() == []


async def test_encode_uses_the_sequence_as_event_id() -> None:
    board = ProgressBoard()
    state = board.create("job").update(42.5, "x")
    event = ProgressSubscription.encode(state)
    assert (event.event, event.id) == ("task.progress", str(state.seq))
    [message] = parse(event.encode())
    assert TASK_PROGRESS.decode(message) == state


async def test_an_overrun_inside_a_timed_batch_comes_out_bare() -> None:
    # With a non-system clock, batched() waits in a task group: the subscription's
    # ProgressOverrun came out wrapped in an ExceptionGroup, which `except` missed.
    board = ProgressBoard(keep_finished=0, max_unread=1)
    subscription = board.subscribe()
    board.create("a")
    events = batched(
        subscription,
        BatchPolicy(max_delay=10, clock=ManualClock()),
        encode=ProgressSubscription.encode,
    )
    raised: list[BaseException] = []

    async def consume() -> None:
        try:
            async for _ in events:
                pass
        except ProgressOverrun as exc:
            raised.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await anyio.wait_all_tasks_blocked()  # "a" is pending in a batch; waiting
            for n in range(3):
                board.create(f"x{n}").complete()
    assert len(raised) == 1


async def test_a_client_away_while_its_tasks_were_forgotten_is_told_and_resynced() -> None:
    # Nothing held the ended tasks for a client that was disconnected: resuming after them
    # sent only newer states, and the final state of a task it saw running never came.
    board = ProgressBoard(keep_finished=1)
    watched = board.create("watched")
    seen = watched.start().seq  # the client saw it running, then went away
    watched.complete()
    for n in range(2):
        board.create(f"x{n}").complete()
    with pytest.raises(KeyError):
        board.get("watched")  # forgotten: nobody live owed its final state
    resumed = board.subscribe(after=seen)
    assert resumed.missed
    board.close()
    states = [state async for state in resumed]
    assert [state.task_id for state in states] == ["x1"]  # every current state, from scratch
    # Resuming after everything forgotten is an ordinary resume.
    later = board.subscribe(after=states[-1].seq)
    assert not later.missed
    assert [state async for state in later] == []


async def test_subscriptions_read_what_a_scan_of_every_task_would_give() -> None:
    # The next state after a cursor is found by bisection in the board's log (a scan of every
    # task per receive made a catch-up quadratic): it must be exactly what the scan gave.
    rng = random.Random(7)
    board = ProgressBoard(keep_finished=5, max_unread=10_000)
    reporters = [board.create(f"t{n}") for n in range(20)]
    subscriptions = [board.subscribe() for _ in range(3)]
    cursors = [0, 0, 0]
    for _ in range(600):
        if reporters and rng.random() < 0.8:
            reporter = rng.choice(reporters)
            if rng.random() < 0.1:
                reporter.complete()  # ended tasks may be forgotten: no longer reported on
                reporters.remove(reporter)
            else:
                reporter.update(rng.randrange(101))
        else:
            reporters.append(board.create())
        which = rng.randrange(3)
        for _ in range(rng.randrange(3)):
            newer = [s for s in board._states.values() if s.seq > cursors[which]]
            expected = min(newer, key=lambda s: s.seq) if newer else None
            got = subscriptions[which]._next()
            assert got == expected
            if got is None:
                break
            assert (await subscriptions[which].receive()) == got
            cursors[which] = got.seq
    assert len(board._log) <= 2 * len(board._states) + 64
