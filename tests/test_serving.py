"""asgikit.serving: the shared thread pool and the Batcher."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import numpy as np
import pytest

from asgikit import HTTPException
from asgikit.serving import (
    Batcher,
    BatcherStats,
    Overloaded,
    QueueTimeout,
    iterate_in_threadpool,
    run_in_threadpool,
    set_threadpool_size,
    threadpool_limiter,
)

pytestmark = pytest.mark.anyio


async def test_run_in_threadpool_runs_off_the_loop() -> None:
    def where(offset: int, *, scale: int) -> tuple[int, int]:
        return threading.get_ident(), offset * scale

    thread, value = await run_in_threadpool(where, 2, scale=3)
    assert value == 6 and thread != threading.get_ident()


async def test_iterate_in_threadpool_closes_on_break() -> None:
    closed = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    async with contextlib.aclosing(iterate_in_threadpool(numbers())) as items:
        async for n in items:
            if n == 2:
                break
    assert closed.is_set()


def blocked_mid_step(
    ended: list[str], cleanup_fails: bool = False
) -> tuple[Iterator[int], threading.Event, threading.Event]:
    """A generator that yields 1, then blocks computing its next item until released
    (model code a thread cannot be interrupted in); it notes how it ended."""
    computing = threading.Event()
    release = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            yield 1
            computing.set()
            release.wait(10)
            yield 2
            ended.append("went on")
        finally:
            ended.append("closed")
            if cleanup_fails:
                raise RuntimeError("cleanup failed")

    return numbers(), computing, release


async def wait_for(ended: list[str]) -> None:
    with anyio.fail_after(10):
        while not ended:  # written by a worker thread: polled, bounded
            await anyio.sleep(0.01)


async def consume_until_cancelled(numbers: Iterator[int], computing: threading.Event) -> None:
    """Iterate ``numbers`` in the pool; cancel the iteration while it computes an item."""
    async with anyio.create_task_group() as task_group:

        async def consume() -> None:
            async for _ in iterate_in_threadpool(numbers):
                pass

        task_group.start_soon(consume)
        await anyio.to_thread.run_sync(computing.wait, 10)
        task_group.cancel_scope.cancel()


async def test_iterate_in_threadpool_cancelled_mid_step_closes_after_that_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A thread cannot be interrupted: the cancellation takes effect at once (on asyncio
    # a native one would not wait anyway), and the generator must not be closed under
    # its feet meanwhile ("generator already executing", its finally skipped).
    ended: list[str] = []
    numbers, computing, release = blocked_mid_step(ended)
    try:
        with anyio.fail_after(10):
            await consume_until_cancelled(numbers, computing)
        assert ended == []  # the step still runs; the iteration is over all the same
    finally:
        release.set()
    await wait_for(ended)
    assert ended == ["closed"]  # closed right after the step: its item was dropped
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Task.cancel(), as streams use it
async def test_a_native_cancellation_mid_step_closes_after_that_step() -> None:
    ended: list[str] = []
    numbers, computing, release = blocked_mid_step(ended)

    async def consume() -> None:
        async for _ in iterate_in_threadpool(numbers):
            pass

    task = asyncio.get_running_loop().create_task(consume())
    try:
        await anyio.to_thread.run_sync(computing.wait, 10)
        task.cancel()
        with anyio.fail_after(10), pytest.raises(asyncio.CancelledError):
            await task
        assert ended == []
    finally:
        release.set()
    await wait_for(ended)
    assert ended == ["closed"]


async def test_a_close_that_fails_after_the_step_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: list[str] = []
    numbers, computing, release = blocked_mid_step(ended, cleanup_fails=True)
    try:
        with anyio.fail_after(10):
            await consume_until_cancelled(numbers, computing)
    finally:
        release.set()
    await wait_for(ended)
    with anyio.fail_after(10):
        while not caplog.records:  # logged by the step's thread once the close failed
            await anyio.sleep(0.01)
    (record,) = caplog.records
    assert record.levelname == "ERROR" and "after its caller left" in record.getMessage()
    assert record.exc_info is not None and "cleanup failed" in str(record.exc_info[1])


async def test_threadpool_size_is_shared_and_configurable() -> None:
    set_threadpool_size(3)
    try:
        assert threadpool_limiter().total_tokens == 3
        with pytest.raises(ValueError):
            set_threadpool_size(0)
    finally:
        set_threadpool_size(40)
    assert threadpool_limiter().total_tokens == 40


class GatedModel:
    """An async batch function that records each batch and holds it until released, so a
    test decides when batches finish (no timing involved)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[anyio.Event] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, items: list[str]) -> list[object]:
        self.batches.append(list(items))
        gate = anyio.Event()
        self.gates.append(gate)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await gate.wait()
        finally:
            self.running -= 1
        if "raise" in items:
            raise ValueError("unlucky batch")
        return [
            ValueError(f"bad {item}") if item.startswith("bad") else f"r{item}" for item in items
        ]

    def release(self, index: int) -> None:
        self.gates[index].set()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds; other tasks run meanwhile."""
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.001)


class Callers:
    """Starts ``batcher(item)`` calls one at a time, in order, and collects outcomes."""

    def __init__(self, batcher: Batcher[str, object], group: anyio.abc.TaskGroup) -> None:
        self.batcher = batcher
        self.group = group
        self.outcomes: dict[str, object] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def _call(self, item: str) -> None:
        with self.scopes.setdefault(item, anyio.CancelScope()) as scope:
            try:
                self.outcomes[item] = await self.batcher(item)
            except Exception as exc:
                self.outcomes[item] = exc
        if scope.cancelled_caught:
            self.outcomes[item] = "cancelled"

    async def start(self, *items: str) -> None:
        """Start one call per item, each once the previous one is queued or dispatched."""
        for item in items:
            before = self.batcher.stats
            self.group.start_soon(self._call, item)
            await until(
                lambda before=before: (  # type: ignore[misc]
                    self.batcher.stats.queued + self.batcher.stats.items
                    > before.queued + before.items
                )
            )


@contextlib.asynccontextmanager
async def gated_batcher(
    **options: Any,
) -> AsyncIterator[tuple[GatedModel, Batcher[str, object], Callers]]:
    """A Batcher over a fresh GatedModel, with a Callers bound to a task group; the whole
    block runs under a five-second bound, and leaving it waits for every caller."""
    model = GatedModel()
    batcher: Batcher[str, object] = Batcher(model, **options)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            yield model, batcher, Callers(batcher, group)


async def test_lone_call_is_dispatched_at_once_without_waiting_for_max_wait() -> None:
    sizes: list[int] = []

    def identity(items: list[str]) -> list[str]:  # sync: runs in the thread pool
        sizes.append(len(items))
        return items

    async with Batcher(identity, max_batch_size=100, max_wait=3600) as batcher:
        with anyio.fail_after(5):  # an hour's max_wait would fail here
            assert await batcher("alone") == "alone"
            assert await batcher("again") == "again"
    assert sizes == [1, 1]


@pytest.mark.parametrize(
    ("max_batch_size", "slots", "sizes"),
    [(32, 1, [10]), (4, 1, [4, 4, 2]), (32, 2, [10])],
)
async def test_calls_made_together_at_an_idle_batcher_leave_together(
    max_batch_size: int, slots: int, sizes: list[int]
) -> None:
    # Ten calls started in one turn of the loop (what asyncio.gather does): the first
    # reaches an idle batcher, and the other nine join its batch instead of waiting for
    # the next one.
    seen: list[int] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(len(items))
        await anyio.sleep(0.01)
        return [item * 2 for item in items]

    results: dict[int, int] = {}

    async def call(item: int) -> None:
        results[item] = await batcher(item)

    async with Batcher(
        double, max_batch_size=max_batch_size, max_wait=3600, max_concurrent_batches=slots
    ) as batcher:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                for item in range(10):
                    group.start_soon(call, item)
    assert seen == sizes
    assert results == {item: item * 2 for item in range(10)}


async def test_max_queue_does_not_count_the_batch_being_formed() -> None:
    # Four calls in one turn at an idle batcher (batches of 2, at most 1 waiting): two
    # form the batch that leaves, one waits, one is shed. (Which is which depends on the
    # order the tasks run in, which trio shuffles.)
    batches: list[list[str]] = []
    release = anyio.Event()

    async def held(items: list[str]) -> list[str]:
        batches.append(items)
        await release.wait()
        return [f"r{item}" for item in items]

    outcomes: dict[str, object] = {}

    async def call(item: str) -> None:
        try:
            outcomes[item] = await batcher(item)
        except Overloaded as exc:
            outcomes[item] = exc

    batcher = Batcher(held, max_batch_size=2, max_wait=3600, max_queue=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            try:
                for item in "abcd":
                    group.start_soon(call, item)
                await until(lambda: bool(batches) and len(outcomes) == 1)  # the shed one
                assert len(batches[0]) == 2
                assert batcher.stats.queued == 1
            finally:
                release.set()  # (never leave a batch held: it cannot be cancelled)
    shed = [item for item, outcome in outcomes.items() if isinstance(outcome, Overloaded)]
    assert len(shed) == 1 and batcher.stats.shed == 1
    assert sorted(len(batch) for batch in batches) == [1, 2]
    served = sorted(item for batch in batches for item in batch)
    assert served == sorted(set("abcd") - set(shed))
    assert all(outcomes[item] == f"r{item}" for item in served)


@pytest.mark.parametrize("kind", ["async, never awaits", "sync"])
async def test_a_function_that_never_waits_still_gets_full_batches(kind: str) -> None:
    # A batch function that returns without suspending (or runs in a thread) must not
    # turn 64 concurrent calls into 64 batches of one.
    seen: list[int] = []

    def identity(items: list[int]) -> list[int]:
        seen.append(len(items))
        return items

    async def identity_async(items: list[int]) -> list[int]:
        return identity(items)

    func = identity if kind == "sync" else identity_async
    results: dict[int, int] = {}

    async def call(item: int) -> None:
        results[item] = await batcher(item)

    async with Batcher(func) as batcher:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                for item in range(64):
                    group.start_soon(call, item)
    assert seen == [32, 32]
    assert results == {item: item for item in range(64)}


async def test_calls_queued_during_a_batch_form_the_next_one_at_once() -> None:
    async with gated_batcher(max_batch_size=8, max_wait=3600) as (model, batcher, callers):
        await callers.start("a")
        await until(lambda: len(model.batches) == 1)
        await callers.start("b", "c", "d")
        assert batcher.stats.queued == 3 and batcher.stats.running == 1
        model.release(0)
        await until(lambda: len(model.batches) == 2)  # no max_wait: the model was idle
        model.release(1)
    assert model.batches == [["a"], ["b", "c", "d"]]
    assert callers.outcomes == {"a": "ra", "b": "rb", "c": "rc", "d": "rd"}
    assert model.most_running == 1


async def test_full_batches_leave_in_order_when_the_model_is_free() -> None:
    async with gated_batcher(max_batch_size=3, max_wait=3600) as (model, batcher, callers):
        await callers.start("0")
        await callers.start(*"1234567")
        assert batcher.stats.queued == 7
        for index in range(4):
            await until(lambda index=index: len(model.batches) > index)  # type: ignore[misc]
            model.release(index)
    assert model.batches == [["0"], ["1", "2", "3"], ["4", "5", "6"], ["7"]]
    assert callers.outcomes == {str(i): f"r{i}" for i in range(8)}
    stats = batcher.stats
    assert (stats.batches, stats.items, stats.batch_sizes) == (4, 8, {1: 2, 3: 2})


async def test_failing_batch_fails_only_its_callers_and_batcher_keeps_serving() -> None:
    async with gated_batcher(max_batch_size=2, max_wait=3600) as (model, batcher, callers):
        await callers.start("0")
        await callers.start("raise", "1", "2", "3")  # batches [raise, 1], [2, 3]
        for index in range(3):
            await until(lambda index=index: len(model.batches) > index)  # type: ignore[misc]
            model.release(index)
    assert model.batches == [["0"], ["raise", "1"], ["2", "3"]]
    outcomes = {item: str(outcome) for item, outcome in callers.outcomes.items()}
    assert outcomes == {
        "0": "r0",
        "raise": "unlucky batch",
        "1": "unlucky batch",
        "2": "r2",
        "3": "r3",
    }
    assert batcher.stats.failed_batches == 1


async def test_wrong_length_fails_the_batch_with_clear_error() -> None:
    async def drops_one(items: list[int]) -> list[int]:
        return items[1:]

    async with Batcher(drops_one, max_batch_size=1) as batcher:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await batcher(1)
        assert batcher.stats.failed_batches == 1


async def test_exception_element_fails_only_its_caller() -> None:
    async with gated_batcher(max_batch_size=3, max_wait=3600) as (model, _batcher, callers):
        await callers.start("x")
        await callers.start("1", "bad", "2")
        model.release(0)
        await until(lambda: len(model.batches) == 2)
        model.release(1)
    assert model.batches[1] == ["1", "bad", "2"]
    assert callers.outcomes["1"] == "r1" and callers.outcomes["2"] == "r2"
    assert isinstance(callers.outcomes["bad"], ValueError)


async def test_cancelled_caller_leaves_the_queue_and_never_reaches_func() -> None:
    async with gated_batcher(max_batch_size=10, max_wait=3600) as (model, batcher, callers):
        await callers.start("a")
        await callers.start("keep", "cancelled")
        callers.scopes["cancelled"].cancel()
        await until(lambda: batcher.stats.queued == 1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await batcher("cancelled-at-once")  # cancelled before it could be dispatched
        model.release(0)
        await until(lambda: len(model.batches) == 2)
        model.release(1)
    assert model.batches == [["a"], ["keep"]]
    assert callers.outcomes == {"a": "ra", "keep": "rkeep", "cancelled": "cancelled"}
    assert batcher.stats.cancelled == 2 and batcher.stats.queued == 0


async def test_a_runner_cancelled_mid_batch_still_delivers_the_batch() -> None:
    async with gated_batcher(max_batch_size=10, max_wait=3600) as (model, _batcher, callers):
        await callers.start("a")
        await callers.start("b", "c", "d")
        model.release(0)  # b's task dispatches the next batch: [b, c, d]
        await until(lambda: len(model.batches) == 2)
        callers.scopes["b"].cancel()
        await anyio.sleep(0)
        model.release(1)
        await callers.start("e")  # the batcher still serves
        await until(lambda: len(model.batches) == 3)
        model.release(2)
    assert model.batches == [["a"], ["b", "c", "d"], ["e"]]
    assert callers.outcomes == {"a": "ra", "b": "cancelled", "c": "rc", "d": "rd", "e": "re"}


async def test_max_concurrent_batches_runs_batches_side_by_side() -> None:
    async with gated_batcher(max_batch_size=2, max_wait=3600, max_concurrent_batches=2) as (
        model,
        batcher,
        callers,
    ):
        await callers.start("a")  # idle: leaves at once
        await callers.start("b")  # a batch is running: b waits for company (max_wait)
        assert batcher.stats.queued == 1 and len(model.batches) == 1
        await callers.start("c")  # full: leaves into the free slot
        await until(lambda: batcher.stats.running == 2)
        await callers.start("d", "e")  # full, but both slots are busy
        assert batcher.stats.queued == 2 and batcher.stats.running == 2
        model.release(1)
        await until(lambda: len(model.batches) == 3)
        model.release(0)
        model.release(2)
    assert model.batches == [["a"], ["b", "c"], ["d", "e"]]
    assert model.most_running == 2
    assert callers.outcomes == {item: f"r{item}" for item in "abcde"}


async def test_max_wait_applies_only_while_another_batch_runs() -> None:
    async with gated_batcher(max_batch_size=10, max_wait=0.01, max_concurrent_batches=2) as (
        model,
        _batcher,
        callers,
    ):
        await callers.start("a")
        await callers.start("b")  # the second slot waits max_wait, then takes b alone
        await until(lambda: len(model.batches) == 2)
        model.release(0)
        model.release(1)
    assert model.batches == [["a"], ["b"]]


async def test_max_queue_wait_raises_queue_timeout_and_never_dispatches() -> None:
    async with gated_batcher(max_batch_size=4, max_queue_wait=0.02) as (model, batcher, callers):
        await callers.start("a")
        await callers.start("late")  # the model stays busy past its deadline
        await until(lambda: "late" in callers.outcomes)
        model.release(0)
        await callers.start("b")
        await until(lambda: len(model.batches) == 2)
        model.release(1)
    error = callers.outcomes["late"]
    assert isinstance(error, QueueTimeout) and isinstance(error, HTTPException)
    assert error.status_code == 504
    assert model.batches == [["a"], ["b"]]
    assert batcher.stats.timed_out == 1 and batcher.stats.queued == 0


async def test_queue_timeout_of_a_caller_waiting_for_a_free_slot() -> None:
    async with gated_batcher(
        max_batch_size=4, max_wait=3600, max_concurrent_batches=2, max_queue_wait=0.02
    ) as (model, batcher, callers):
        await callers.start("a")
        await callers.start("late")  # its own task waits for company in the 2nd slot
        await until(lambda: "late" in callers.outcomes)
        await callers.start("b")  # the batcher still serves
        await until(lambda: batcher.stats.queued == 1)
        model.release(0)
        await until(lambda: len(model.batches) == 2)
        model.release(1)
    assert isinstance(callers.outcomes["late"], QueueTimeout)
    assert model.batches == [["a"], ["b"]]
    assert batcher.stats.timed_out == 1


async def test_full_queue_raises_overloaded_503() -> None:
    async with gated_batcher(max_batch_size=1, max_wait=0, max_queue=2) as (
        model,
        batcher,
        callers,
    ):
        await callers.start("a")
        await callers.start("b", "c")  # one running, two queued
        with pytest.raises(Overloaded) as info:
            await batcher("d")
        for index in range(3):
            await until(lambda index=index: len(model.batches) > index)  # type: ignore[misc]
            model.release(index)
    assert isinstance(info.value, HTTPException)
    assert info.value.status_code == 503
    assert info.value.headers == {"Retry-After": "1"}
    assert batcher.stats.shed == 1 and batcher.stats.items == 3


async def test_stats_are_a_read_only_snapshot() -> None:
    async def echo(items: list[int]) -> list[int]:
        return items

    batcher = Batcher(echo, max_batch_size=4)
    before = batcher.stats
    assert await batcher(1) == 1
    assert isinstance(before, BatcherStats)
    assert (before.batches, batcher.stats.batches) == (0, 1)
    assert batcher.stats.batch_sizes == {1: 1}
    with pytest.raises(TypeError):
        batcher.stats.batch_sizes[2] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batcher.stats.queued = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        batcher.stats = before  # type: ignore[misc]


async def test_aclose_drains_then_rejects() -> None:
    async with gated_batcher(max_batch_size=100, max_wait=3600, max_concurrent_batches=2) as (
        model,
        batcher,
        callers,
    ):
        await callers.start("a")
        await callers.start("b", "c")  # slot 2 would wait an hour for company
        callers.group.start_soon(batcher.aclose)
        await until(lambda: len(model.batches) == 2)  # closing dispatches at once
        model.release(0)
        model.release(1)
    assert callers.outcomes == {"a": "ra", "b": "rb", "c": "rc"}
    with pytest.raises(RuntimeError, match="closed"):
        await batcher("d")


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        Batcher(list, max_batch_size=0)
    with pytest.raises(ValueError):
        Batcher(list, max_wait=-1)
    with pytest.raises(ValueError):
        Batcher(list, max_queue=0)
    with pytest.raises(ValueError, match="max_concurrent_batches"):
        Batcher(list, max_concurrent_batches=0)
    with pytest.raises(ValueError, match="max_queue_wait"):
        Batcher(list, max_queue_wait=0)
    # Counts must be ints (a float batch size would slice oddly), seconds numbers.
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(list, max_batch_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrent_batches"):
        Batcher(list, max_concurrent_batches=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue"):
        Batcher(list, max_queue=True)
    with pytest.raises(ValueError, match="max_wait"):
        Batcher(list, max_wait="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue_wait"):
        Batcher(list, max_queue_wait="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batch function"):
        Batcher(None)  # type: ignore[arg-type]


def test_numpy_numbers_are_accepted_as_settings() -> None:
    # Settings often come out of NumPy code or a config parsed with it.
    batcher = Batcher(
        list,
        max_batch_size=np.int64(16),  # type: ignore[arg-type]
        max_wait=np.float32(0.01),  # type: ignore[arg-type]
        max_queue=np.int32(64),  # type: ignore[arg-type]
        max_concurrent_batches=np.int64(2),  # type: ignore[arg-type]
        max_queue_wait=np.float64(1.5),
    )
    settings = (batcher.max_batch_size, batcher.max_queue, batcher.max_concurrent_batches)
    assert settings == (16, 64, 2)
    assert all(type(value) is int for value in settings)
    assert type(batcher.max_wait) is float and type(batcher.max_queue_wait) is float


@pytest.mark.parametrize("slots", [1, 3])
async def test_ten_thousand_calls_with_random_cancellations(slots: int) -> None:
    batched: list[int] = []

    async def tag(items: list[int]) -> list[tuple[str, int]]:
        batched.extend(items)
        await anyio.sleep(0)
        return [("result", i) for i in items]

    rng = random.Random(5)
    batcher = Batcher(tag, max_batch_size=32, max_wait=0.001, max_concurrent_batches=slots)
    delivered: dict[int, tuple[str, int]] = {}
    cancelled = 0
    limit = anyio.Semaphore(500)

    async def call(i: int, timeout: float | None) -> None:
        nonlocal cancelled
        async with limit:
            with anyio.move_on_after(timeout) as scope:
                delivered[i] = await batcher(i)
            cancelled += scope.cancelled_caught

    with anyio.fail_after(120):
        async with batcher, anyio.create_task_group() as tg:
            for i in range(10_000):
                tg.start_soon(call, i, rng.choice([None, None, 0, 0.0005, 0.002]))
    assert delivered == {i: ("result", i) for i in delivered}  # each got exactly its own
    assert cancelled > 0 and len(delivered) > 0
    assert len(delivered) + cancelled == 10_000
    stats = batcher.stats
    assert len(set(batched)) == len(batched) == stats.items  # nothing sent twice
    assert stats.items + stats.cancelled == 10_000  # withdrawn items never reached func
    assert stats.queued == 0 and stats.running == 0


async def test_aclose_returns_after_every_caller_has_its_result() -> None:
    async def double(items: list[int]) -> list[int]:
        await anyio.sleep(0)
        return [item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch_size=100, max_wait=5)
    results: list[int] = []

    async def call(item: int) -> None:
        results.append(await batcher(item))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for item in range(50):
                group.start_soon(call, item)
            await until(lambda: batcher.stats.queued + batcher.stats.items == 50)
            await batcher.aclose()
            assert sorted(results) == [item * 2 for item in range(50)]


async def test_sync_function_in_threads_with_two_slots_delivers_every_result() -> None:
    running = 0
    most_running = 0
    lock = threading.Lock()
    both_in = threading.Event()

    def square(items: list[int]) -> list[int]:  # runs in the thread pool
        nonlocal running, most_running
        with lock:
            running += 1
            most_running = max(most_running, running)
            if running == 2:
                both_in.set()
        both_in.wait(5)  # the first batch waits for a second one to run beside it
        with lock:
            running -= 1
        return [item * item for item in items]

    batcher = Batcher(square, max_batch_size=4, max_wait=0.001, max_concurrent_batches=2)
    results: dict[int, int] = {}

    async def call(item: int) -> None:
        results[item] = await batcher(item)

    with anyio.fail_after(10):
        async with batcher, anyio.create_task_group() as group:
            for item in range(200):
                group.start_soon(call, item)
    assert results == {item: item * item for item in range(200)}
    stats = batcher.stats
    assert stats.items == 200 and stats.queued == 0 and stats.running == 0
    assert sum(size * count for size, count in stats.batch_sizes.items()) == 200
    assert max(stats.batch_sizes) <= 4
    assert most_running == 2


async def test_sync_batches_hold_a_thread_pool_token_and_wait_when_the_pool_is_full() -> None:
    limiter = threadpool_limiter()
    seen: list[tuple[int, int]] = []

    def record(items: list[int]) -> list[int]:  # runs in a worker thread
        seen.append((threading.get_ident(), limiter.borrowed_tokens))
        return items

    occupied = threading.Event()
    release = threading.Event()

    def hold() -> None:
        occupied.set()
        release.wait(5)

    set_threadpool_size(1)
    try:
        batcher = Batcher(record, max_batch_size=4)
        assert await batcher(1) == 1  # a free token: the batch takes it
        results: list[int] = []

        async def call(item: int) -> None:
            results.append(await batcher(item))

        async with anyio.create_task_group() as group:
            group.start_soon(run_in_threadpool, hold)  # the only token is taken
            with anyio.fail_after(5):
                while not occupied.is_set():
                    await anyio.sleep(0.001)
                group.start_soon(call, 2)
                while limiter.statistics().tasks_waiting < 1:  # the batch waits for it
                    await anyio.sleep(0.001)
                assert len(seen) == 1 and batcher.stats.running == 1
                release.set()
        assert results == [2]
    finally:
        set_threadpool_size(40)
    assert [tokens for _, tokens in seen] == [1, 1]
    assert all(thread != threading.get_ident() for thread, _ in seen)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_caller_cancelled_before_it_calls_never_reaches_func() -> None:
    seen: list[list[str]] = []

    async def model(items: list[str]) -> list[str]:
        seen.append(list(items))
        return items

    batcher: Batcher[str, str] = Batcher(model, max_batch_size=8)
    outcomes: dict[str, str] = {}

    async def call(item: str, cancelled: bool) -> None:
        with anyio.CancelScope() as scope:
            if cancelled:
                scope.cancel()  # say the request's deadline passed already
            outcomes[item] = await batcher(item)
        if scope.cancelled_caught:
            outcomes[item] = "cancelled"

    async with anyio.create_task_group() as group:
        group.start_soon(call, "kept", False)
        group.start_soon(call, "late", True)
    assert outcomes == {"kept": "kept", "late": "cancelled"}
    assert seen == [["kept"]]
    assert batcher.stats.cancelled == 1


async def test_every_caller_of_a_failed_batch_gets_the_error_from_where_it_failed() -> None:
    async def model(items: list[int]) -> list[int]:
        await anyio.sleep(0)
        raise ValueError("the model failed")

    batcher: Batcher[int, int] = Batcher(model, max_batch_size=32)
    depths: list[int] = []

    async def call(item: int) -> None:
        try:
            await batcher(item)
        except ValueError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))

    async with anyio.create_task_group() as group:
        for item in range(32):
            group.start_soon(call, item)
    # One shared error: raised as it was, it gathered every earlier caller's frames.
    assert len(depths) == 32 and max(depths) - min(depths) <= 2, depths
