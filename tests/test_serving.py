"""asgikit.serving: the shared thread pool and the Batcher."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

import anyio
import pytest

from asgikit import HTTPException
from asgikit.serving import (
    Batcher,
    Overloaded,
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


async def test_threadpool_size_is_shared_and_configurable() -> None:
    set_threadpool_size(3)
    try:
        assert threadpool_limiter().total_tokens == 3
        with pytest.raises(ValueError):
            set_threadpool_size(0)
    finally:
        set_threadpool_size(40)
    assert threadpool_limiter().total_tokens == 40


async def test_full_batch_dispatches_at_once_results_in_order() -> None:
    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 2 for i in items]

    batcher = Batcher(double, max_batch_size=4, max_wait=60)  # only size can dispatch
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await batcher(i)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(call, i)
    assert results == {i: i * 2 for i in range(8)}
    # Two full batches (trio starts tasks in its own order, so which items is not fixed).
    assert [len(batch) for batch in batches] == [4, 4]
    assert sorted(batches[0] + batches[1]) == list(range(8))


async def test_deadline_dispatches_partial_batch() -> None:
    sizes: list[int] = []

    def identity(items: list[str]) -> list[str]:  # sync: runs in the thread pool
        sizes.append(len(items))
        return items

    async with Batcher(identity, max_batch_size=100, max_wait=0.01) as batcher:
        with anyio.fail_after(5):
            assert await batcher("alone") == "alone"
    assert sizes == [1]


async def test_failing_batch_fails_only_its_callers_and_batcher_keeps_serving() -> None:
    async def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky batch")
        return items

    batcher = Batcher(picky, max_batch_size=2, max_wait=60)
    outcomes: dict[int, object] = {}

    async def call(i: int) -> None:
        try:
            outcomes[i] = await batcher(i)
        except ValueError as exc:
            outcomes[i] = str(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in (13, 1, 2, 3):
                tg.start_soon(call, i)
                # Trio may start tasks in any order (it shuffles them once hypothesis is
                # imported): let each call reach the batcher before the next one.
                await anyio.wait_all_tasks_blocked()
    assert outcomes == {13: "unlucky batch", 1: "unlucky batch", 2: 2, 3: 3}


async def test_wrong_length_fails_the_batch_with_clear_error() -> None:
    async def drops_one(items: list[int]) -> list[int]:
        return items[1:]

    async with Batcher(drops_one, max_batch_size=1) as batcher:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await batcher(1)


async def test_exception_element_fails_only_its_caller() -> None:
    async def checked(items: list[int]) -> list[object]:
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    batcher = Batcher(checked, max_batch_size=3, max_wait=60)
    outcomes: dict[int, object] = {}

    async def call(i: int) -> None:
        try:
            outcomes[i] = await batcher(i)
        except ValueError as exc:
            outcomes[i] = str(exc)

    async with anyio.create_task_group() as tg:
        for i in (1, -1, 2):
            tg.start_soon(call, i)
    assert outcomes == {1: 1, -1: "bad -1", 2: 2}


async def test_cancelled_caller_leaves_batch_before_dispatch() -> None:
    batches: list[list[str]] = []

    async def record(items: list[str]) -> list[str]:
        batches.append(items)
        return items

    batcher = Batcher(record, max_batch_size=10, max_wait=0.05)
    got: list[str] = []

    async def call(item: str) -> None:
        got.append(await batcher(item))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "keep-1")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await batcher("cancelled")  # cancelled before its batch is dispatched
        tg.start_soon(call, "keep-2")
    assert sorted(got) == ["keep-1", "keep-2"]
    assert all("cancelled" not in batch for batch in batches)


async def test_full_queue_raises_overloaded_503() -> None:
    release = anyio.Event()

    async def slow(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher = Batcher(slow, max_batch_size=1, max_wait=0, max_queue=2)
    async with anyio.create_task_group() as tg:
        for i in range(3):  # one running, two queued
            tg.start_soon(batcher, i)
        while batcher.queued < 2:
            await anyio.sleep(0.001)
        with pytest.raises(Overloaded) as info:
            await batcher(99)
        release.set()
    assert isinstance(info.value, HTTPException)
    assert info.value.status_code == 503
    assert info.value.headers == {"Retry-After": "1"}


async def test_aclose_drains_then_rejects() -> None:
    async def echo(items: list[int]) -> list[int]:
        return items

    batcher = Batcher(echo, max_batch_size=100, max_wait=3600)  # would wait an hour
    results: list[int] = []

    async def call(i: int) -> None:
        results.append(await batcher(i))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(call, i)
        while batcher.queued < 5:
            await anyio.sleep(0.001)
        with anyio.fail_after(5):
            await batcher.aclose()
    assert sorted(results) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="closed"):
        await batcher(6)


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        Batcher(list, max_batch_size=0)
    with pytest.raises(ValueError):
        Batcher(list, max_wait=-1)
    with pytest.raises(ValueError):
        Batcher(list, max_queue=0)


async def test_ten_thousand_calls_with_random_cancellations() -> None:
    async def tag(items: list[int]) -> list[tuple[str, int]]:
        await anyio.sleep(0)
        return [("result", i) for i in items]

    rng = random.Random(5)
    batcher = Batcher(tag, max_batch_size=32, max_wait=0.001)
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
    assert batcher.queued == 0


@pytest.mark.anyio
async def test_aclose_returns_after_every_caller_has_its_result() -> None:
    async def double(items: list[int]) -> list[int]:
        return [item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch_size=100, max_wait=5)
    results: list[int] = []

    async def call(item: int) -> None:
        results.append(await batcher(item))

    async with anyio.create_task_group() as group:
        for item in range(50):
            group.start_soon(call, item)
        while batcher.queued < 50:
            await anyio.sleep(0)
        await batcher.aclose()
        assert sorted(results) == [item * 2 for item in range(50)]
