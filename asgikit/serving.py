"""Serving helpers: the shared thread pool and dynamic micro-batching.

`run_in_threadpool` and `iterate_in_threadpool` run blocking model code off the event
loop, on one `anyio.CapacityLimiter` sized by `set_threadpool_size`. `Batcher` groups
concurrent calls into batches, so a model evaluates 32 inputs in one call instead of 32
calls of one; `Overloaded` is the 503 its full queue answers with.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import anyio

from asgikit._concurrency import (
    iterate_in_threadpool,
    run_in_threadpool,
    set_threadpool_size,
    threadpool_limiter,
)
from asgikit.background import is_async_callable
from asgikit.exceptions import HTTPException

__all__ = [
    "Batcher",
    "Overloaded",
    "iterate_in_threadpool",
    "run_in_threadpool",
    "set_threadpool_size",
    "threadpool_limiter",
]

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[list[T]], Sequence[R] | Awaitable[Sequence[R]]]


class Overloaded(HTTPException):
    """503 Service Unavailable with ``Retry-After``: the server sheds load.

    Raised by `Batcher` when its queue is full; the router turns it into
    ``503 {"detail": ...}`` with a ``Retry-After`` header (seconds).
    """

    def __init__(self, detail: str | None = None, retry_after: int = 1) -> None:
        super().__init__(
            503,
            detail or "Server overloaded, retry later",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


# Call states.
_QUEUED, _RUNNING, _DONE, _PROMOTED = range(4)


class _Call(Generic[T, R]):
    """One caller's item, and where its result lands."""

    __slots__ = ("arrived", "error", "event", "item", "result", "state")

    def __init__(self, item: T, arrived: float) -> None:
        self.item = item
        self.arrived = arrived
        self.state = _QUEUED
        self.result: R | None = None
        self.error: BaseException | None = None
        self.event = anyio.Event()

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.result = result
        self.error = error
        self.state = _DONE
        self.event.set()


class Batcher(Generic[T, R]):
    """Dynamic micro-batching: concurrent ``await batcher(item)`` calls share one
    ``func(items)`` call.

    ``func(items: list[T]) -> list[R]`` may be ``async def`` or a plain function (then
    run in the shared thread pool). A batch is dispatched when it holds
    ``max_batch_size`` items, or ``max_wait`` seconds after its first item arrived,
    whichever comes first; one batch runs at a time, and items arriving meanwhile form
    the next one. Results go back to their callers in order.

    - ``func`` raising, or returning a list of the wrong length, fails every caller of
      that batch with that error (a length mismatch raises `RuntimeError`); the batcher
      keeps serving.
    - An element of the returned list that is an `Exception` instance fails only its own
      caller: one bad input does not sink its batch.
    - A caller cancelled before its batch is dispatched is removed from it.
    - With ``max_queue``, a call that would make more than ``max_queue`` items wait raises
      `Overloaded` (503 with ``Retry-After``) at once.

    There is no background task: the batches are run by the task of one waiting caller
    (the oldest one), which hands the job on when its own result is in. That caller's
    cancellation while it runs a batch takes effect when the batch finishes, so the batch's
    other callers still get their results.

    Use it as ``async with Batcher(...) as batcher:`` (in a lifespan), or just call it;
    ``await batcher.aclose()`` runs what is queued at once, waits for it and refuses new
    calls (`RuntimeError`).

    >>> batcher = Batcher(model.predict, max_batch_size=32, max_wait=0.005)
    >>> label = await batcher(features)
    """

    def __init__(
        self,
        func: BatchFunction[T, R],
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.005,
        max_queue: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        if not max_wait >= 0 or math.isinf(max_wait):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, not {max_wait}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be at least 1 or None, not {max_queue}")
        self.func = func
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._is_async = is_async_callable(func)
        self._queue: deque[_Call[T, R]] = deque()
        self._queued = 0  # live (not cancelled) calls in _queue
        self._running = False  # some caller is running batches
        self._flush = False  # dispatch without waiting (closing)
        self._closed = False
        self._wakeup: anyio.Event | None = None  # set when a batch fills up
        self._idle: anyio.Event | None = None  # set when the queue drains (aclose)
        self._callers = 0  # calls that have not returned yet
        self._returned: anyio.Event | None = None  # set when they all have (aclose)

    @property
    def queued(self) -> int:
        """How many calls wait for their batch to be dispatched."""
        return self._queued

    async def __call__(self, item: T) -> R:
        """Add ``item`` to the next batch and return its result.

        Raises what ``func`` raised for the batch (or the `Exception` returned for this
        item), `Overloaded` when the queue is full, `RuntimeError` once closed.
        """
        if self._closed:
            raise RuntimeError("Batcher is closed; it no longer accepts calls")
        if self.max_queue is not None and self._queued >= self.max_queue:
            raise Overloaded(f"Batch queue is full ({self.max_queue} waiting), retry later")
        call: _Call[T, R] = _Call(item, anyio.current_time())
        self._queue.append(call)
        self._queued += 1
        if self._queued >= self.max_batch_size and self._wakeup is not None:
            self._wakeup.set()
        self._callers += 1
        try:
            if not self._running:
                self._running = True
                return await self._run_batches(call)
            try:
                await call.event.wait()
            except BaseException:
                if call.state == _QUEUED:
                    self._withdraw(call)
                elif call.state == _PROMOTED:
                    # Asked to run the batches just as we were cancelled: pass it on.
                    self._withdraw(call)
                    self._hand_over()
                raise
            if call.state == _PROMOTED:
                return await self._run_batches(call)
            return self._outcome(call)
        finally:
            self._callers -= 1
            if self._callers == 0 and self._returned is not None:
                self._returned.set()

    def _outcome(self, call: _Call[T, R]) -> R:
        if call.error is not None:
            raise call.error
        return cast(R, call.result)

    def _withdraw(self, call: _Call[T, R]) -> None:
        """Take a cancelled caller's item out of the queue (it is skipped when popped)."""
        call.state = _DONE
        self._queued -= 1

    async def _run_batches(self, own: _Call[T, R]) -> R:
        """Run batches in this caller's task until its own result is in, then hand over."""
        own.state = _QUEUED
        try:
            while own.state != _DONE:
                batch = await self._next_batch()
                if batch:
                    await self._run(batch)
        except BaseException:
            if own.state == _QUEUED:
                self._withdraw(own)
            raise
        finally:
            self._hand_over()
        return self._outcome(own)

    def _hand_over(self) -> None:
        """Make the oldest waiting caller run the batches, or mark the batcher idle."""
        queue = self._queue
        while queue:
            call = queue[0]
            if call.state == _QUEUED:
                call.state = _PROMOTED
                call.event.set()
                return
            queue.popleft()
        self._running = False
        if self._idle is not None:
            self._idle.set()

    async def _next_batch(self) -> list[_Call[T, R]]:
        """Wait until a batch is full or due, then take it out of the queue."""
        queue = self._queue
        while queue and queue[0].state != _QUEUED and queue[0].state != _PROMOTED:
            queue.popleft()
        if not queue:
            return []
        if self._queued < self.max_batch_size and not self._flush:
            deadline = queue[0].arrived + self.max_wait
            wakeup = self._wakeup = anyio.Event()
            try:
                with anyio.move_on_after(deadline - anyio.current_time()):
                    await wakeup.wait()
            finally:
                self._wakeup = None
        batch: list[_Call[T, R]] = []
        while queue and len(batch) < self.max_batch_size:
            call = queue.popleft()
            if call.state == _QUEUED or call.state == _PROMOTED:
                call.state = _RUNNING
                batch.append(call)
        self._queued -= len(batch)
        return batch

    async def _run(self, batch: list[_Call[T, R]]) -> None:
        """Call ``func`` on the batch and deliver every result; shielded, so a batch
        always completes once dispatched."""
        items = [call.item for call in batch]
        with anyio.CancelScope(shield=True):
            try:
                if self._is_async:
                    results = await cast(Callable[[list[T]], Awaitable[Sequence[R]]], self.func)(
                        items
                    )
                else:
                    results = await run_in_threadpool(
                        cast(Callable[[list[T]], Sequence[R]], self.func), items
                    )
            except Exception as exc:
                for call in batch:
                    call.finish(None, exc)
                return
            except BaseException:
                error = RuntimeError("the batch was interrupted")
                for call in batch:
                    call.finish(None, error)
                raise
        try:
            count = len(results)
        except TypeError:
            count = -1
        if count != len(batch):
            error = RuntimeError(
                f"batch function {_name(self.func)} returned {count if count >= 0 else 'no'} "
                f"results for {len(batch)} items; it must return one result per item, in order"
            )
            for call in batch:
                call.finish(None, error)
            return
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                call.finish(None, result)
            else:
                call.finish(result, None)

    async def __aenter__(self) -> Batcher[T, R]:
        if self._closed:
            raise RuntimeError("Batcher is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting calls, dispatch what is queued without waiting for
        ``max_wait``, and return once every queued call has returned its result."""
        self._closed = True
        self._flush = True
        if self._wakeup is not None:
            self._wakeup.set()
        while self._running:
            idle = self._idle = anyio.Event()
            await idle.wait()
            self._idle = None
        # Results are in; wait until every caller has also resumed and taken its own
        # (on trio a woken task runs later than on asyncio).
        while self._callers:
            returned = self._returned = anyio.Event()
            await returned.wait()
            self._returned = None

    def __repr__(self) -> str:
        return (
            f"<Batcher {_name(self.func)} max_batch_size={self.max_batch_size} "
            f"max_wait={self.max_wait} queued={self._queued}>"
        )


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__
