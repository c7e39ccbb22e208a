"""Serving helpers: the shared thread pool and dynamic micro-batching.

`run_in_threadpool` and `iterate_in_threadpool` run blocking model code off the event
loop, on one `anyio.CapacityLimiter` sized by `set_threadpool_size`. `Batcher` groups
concurrent calls into batches, so a model evaluates 32 inputs in one call instead of 32
calls of one; `Overloaded` (503) and `QueueTimeout` (504) are how it sheds load, and
`BatcherStats` is what it reports for metrics.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import numbers
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.lowlevel

from asgikit._concurrency import (
    iterate_in_threadpool,
    run_in_threadpool,
    run_to_the_end,
    running_on_asyncio,
    set_threadpool_size,
    threadpool_limiter,
)
from asgikit._inspect import is_async_callable
from asgikit.exceptions import Overloaded, QueueTimeout

__all__ = [
    "Batcher",
    "BatcherStats",
    "Overloaded",
    "QueueTimeout",
    "iterate_in_threadpool",
    "run_in_threadpool",
    "set_threadpool_size",
    "threadpool_limiter",
]

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[list[T]], Sequence[R] | Awaitable[Sequence[R]]]


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of a `Batcher`, taken by reading ``batcher.stats`` (for metrics).

    ``queued`` and ``running`` are the state now; the rest count since the batcher was
    created. ``items / batches`` is the mean batch size, and ``batch_sizes`` the exact
    histogram (``batch_sizes[n]``: how many batches held ``n`` items).
    """

    queued: int
    """Calls waiting for their batch to be dispatched."""
    running: int
    """Batches in the batch function now (at most ``max_concurrent_batches``)."""
    batches: int
    """Batches dispatched to the batch function."""
    items: int
    """Items dispatched to the batch function."""
    shed: int
    """Calls refused with `Overloaded` because the queue was full."""
    timed_out: int
    """Calls that raised `QueueTimeout` (their items were never dispatched)."""
    cancelled: int
    """Calls cancelled (timeout, disconnect) before their items were dispatched."""
    failed_batches: int
    """Batches whose function raised or returned the wrong number of results."""
    batch_seconds: float
    """Seconds spent in the batch function, summed over batches."""
    batch_sizes: Mapping[int, int]
    """``batch_sizes[n]``: batches dispatched with ``n`` items (read-only; sizes seen only)."""


# Call states: waiting in the queue, in a batch being run, result (or error) delivered.
_QUEUED, _RUNNING, _DONE = range(3)


class _Call(Generic[T, R]):
    """One caller's item, and where its result lands."""

    __slots__ = ("arrived", "error", "event", "item", "result", "runner", "state", "traceback")

    def __init__(self, item: T, arrived: float) -> None:
        self.item = item
        self.arrived = arrived
        self.state = _QUEUED
        self.runner = False  # this caller's task dispatches batches (see Batcher)
        self.result: R | None = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.event = anyio.Event()  # set when done, or when made a runner

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.result = result
        self.error = error
        # A failed batch's error goes to every caller in it, each raising the same
        # object: each raises it from where the batch failed, or the traceback would
        # grow by every earlier caller's frames.
        self.traceback = None if error is None else error.__traceback__
        self.state = _DONE
        self.event.set()

    def outcome(self) -> R:
        """The result, or the error raised with the traceback it had when it landed."""
        if self.error is not None:
            raise self.error.with_traceback(self.traceback)
        return cast(R, self.result)


class Batcher(Generic[T, R]):
    """Dynamic micro-batching: concurrent ``await batcher(item)`` calls share one
    ``func(items)`` call.

    ``func(items: list[T]) -> list[R]`` may be ``async def`` or a plain function (then
    run in a thread, holding a token of the shared thread-pool limiter; on asyncio the
    thread is the event loop's default executor, started the moment the batch leaves).
    Results go back to their callers in order. Up to ``max_concurrent_batches`` batches
    run at once (default 1); a batch holds at most ``max_batch_size`` items, the oldest
    first. When a batch leaves:

    - when no batch is running (the model is idle), after one turn of the event loop:
      the calls made in the same turn (an ``asyncio.gather``, a task group) leave
      together, a lone call is not delayed (a turn takes microseconds), and what queues
      while a batch runs becomes the next batch the moment it finishes, so batches grow
      with the load by themselves;
    - while another batch is running and a slot is free (``max_concurrent_batches`` > 1):
      when it is full, or ``max_wait`` seconds after its oldest item arrived. ``max_wait``
      never delays a batch when the model is idle, so with the default single slot it
      has no effect;
    - while every slot is busy: as soon as a batch finishes.

    Errors and limits:

    - ``func`` raising, or returning a list of the wrong length, fails every caller of
      that batch with that error (a length mismatch raises `RuntimeError`); the batcher
      keeps serving.
    - An element of the returned list that is an `Exception` instance fails only its own
      caller: one bad input does not sink its batch.
    - A caller cancelled (timeout, disconnect) before its item is dispatched is removed
      from the queue; its item never reaches ``func``.
    - With ``max_queue``, a call that would make more than ``max_queue`` items wait raises
      `Overloaded` (503 with ``Retry-After``) at once.
    - With ``max_queue_wait``, a call that has waited that many seconds without being
      dispatched raises `QueueTimeout` (504); its item never reaches ``func``.

    ``stats`` is a `BatcherStats` snapshot for metrics (queue depth, batches in flight,
    batch sizes, sheds, timeouts).

    There is no background task: batches are dispatched by the tasks of waiting callers
    (at most one per batch slot, the oldest), each until its own item is dispatched; it
    then hands the job on to the next waiting caller before the batch's results go out.
    A caller's cancellation while its task runs a batch takes effect when the batch
    finishes, so the batch's other callers still get their results.

    Use it as ``async with Batcher(...) as batcher:`` (in a lifespan), or just call it;
    ``await batcher.aclose()`` dispatches what is queued at once, waits for it and refuses
    new calls (`RuntimeError`).

    >>> batcher = Batcher(model.predict, max_batch_size=32, max_queue_wait=2.0)
    >>> label = await batcher("a text to classify")
    """

    def __init__(
        self,
        func: BatchFunction[T, R],
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.005,
        max_queue: int | None = None,
        max_concurrent_batches: int = 1,
        max_queue_wait: float | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"Batcher needs a batch function, not {func!r}")
        if not _is_count(max_batch_size) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an int of at least 1, not {max_batch_size!r}")
        if not _is_seconds(max_wait) or not max_wait >= 0 or math.isinf(max_wait):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, not {max_wait!r}")
        if max_queue is not None and (not _is_count(max_queue) or max_queue < 1):
            raise ValueError(f"max_queue must be an int of at least 1 or None, not {max_queue!r}")
        if not _is_count(max_concurrent_batches) or max_concurrent_batches < 1:
            raise ValueError(
                f"max_concurrent_batches must be an int >= 1, not {max_concurrent_batches!r}"
            )
        if max_queue_wait is not None and (
            not _is_seconds(max_queue_wait) or not max_queue_wait > 0
        ):
            raise ValueError(
                f"max_queue_wait must be a number of seconds > 0 or None, not {max_queue_wait!r}"
            )
        self.func = func
        # (As plain int and float: NumPy's numbers are accepted too.)
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait)
        self.max_queue = None if max_queue is None else int(max_queue)
        self.max_concurrent_batches = int(max_concurrent_batches)
        self.max_queue_wait = None if max_queue_wait is None else float(max_queue_wait)
        self._is_async = is_async_callable(func)
        self._queue: deque[_Call[T, R]] = deque()  # oldest first; finished calls skipped
        self._queued = 0  # calls in _queue still waiting (state _QUEUED)
        self._runners = 0  # callers whose tasks dispatch batches (<= max_concurrent_batches)
        self._running = 0  # batches in func now
        self._flush = False  # dispatch without waiting (closing)
        # The first call to an idle batcher, while its task gives the loop one turn
        # before taking the batch, so calls made in the same turn join it (_next_batch).
        self._gatherer: _Call[T, R] | None = None
        self._closed = False
        self._wakeup: anyio.Event | None = None  # wakes runners waiting for a batch to fill
        self._callers = 0  # calls that have not returned yet
        self._returned: anyio.Event | None = None  # set when they all have (aclose)
        self._batches = 0
        self._items = 0
        self._shed = 0
        self._timed_out = 0
        self._cancelled = 0
        self._failed_batches = 0
        self._batch_seconds = 0.0
        self._batch_sizes: dict[int, int] = {}

    @property
    def queued(self) -> int:
        """How many calls wait for their batch to be dispatched."""
        return self._queued

    @property
    def stats(self) -> BatcherStats:
        """A `BatcherStats` snapshot: queue depth, batches running, counts since creation."""
        return BatcherStats(
            queued=self._queued,
            running=self._running,
            batches=self._batches,
            items=self._items,
            shed=self._shed,
            timed_out=self._timed_out,
            cancelled=self._cancelled,
            failed_batches=self._failed_batches,
            batch_seconds=self._batch_seconds,
            batch_sizes=MappingProxyType(dict(sorted(self._batch_sizes.items()))),
        )

    async def __call__(self, item: T) -> R:
        """Add ``item`` to the next batch and return its result.

        Raises what ``func`` raised for the batch (or the `Exception` returned for this
        item), `Overloaded` when the queue is full, `QueueTimeout` when the call waited
        ``max_queue_wait`` seconds, `RuntimeError` once closed.
        """
        if self._closed:
            raise RuntimeError("Batcher is closed; it no longer accepts calls")
        # A caller cancelled already (its scope timed out, its client left) must not
        # send its item to the model: the cancellation could otherwise arrive only
        # once the batch has left.
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self._cancelled += 1
            raise
        waiting = self._queued
        if self._gatherer is not None:  # the batch being formed is not waiting
            waiting -= min(waiting, self.max_batch_size)
        if self.max_queue is not None and waiting >= self.max_queue:
            self._shed += 1
            raise Overloaded(f"Batch queue is full ({self.max_queue} waiting), retry later")
        call: _Call[T, R] = _Call(item, anyio.current_time())
        self._queue.append(call)
        self._queued += 1
        if self._queued >= self.max_batch_size:
            self._wake()
        if self._runners < self.max_concurrent_batches:
            call.runner = True
            self._runners += 1
            if self._running == 0 and self._queued == 1:  # the model is idle
                self._gatherer = call
        self._callers += 1
        try:
            return await self._serve(call)
        finally:
            self._callers -= 1
            if self._callers == 0 and self._returned is not None:
                self._returned.set()

    async def _serve(self, call: _Call[T, R]) -> R:
        """Wait for ``call``'s result, dispatching batches while this task is a runner."""
        while True:
            if call.runner:
                try:
                    batch = await self._next_batch(call)
                    if batch:
                        await self._run(batch, call)
                        # The batch ran shielded: a cancellation meanwhile lands here.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                except BaseException:
                    self._leave(call)
                    raise
                if call.runner and call.state != _QUEUED:
                    self._retire(call)
                continue
            if call.state == _DONE:
                return call.outcome()
            if call.event.is_set():  # it woke us to make us a runner; that is over
                call.event = anyio.Event()
            timeout = None
            if call.state == _QUEUED and self.max_queue_wait is not None:
                timeout = call.arrived + self.max_queue_wait - anyio.current_time()
            try:
                with anyio.move_on_after(timeout):
                    await call.event.wait()
            except BaseException:
                self._leave(call)
                raise
            if call.state == _QUEUED and not call.runner and not call.event.is_set():
                self._time_out(call)  # the deadline passed before anything happened

    def _leave(self, call: _Call[T, R]) -> None:
        """The caller is cancelled: withdraw its item if still queued, pass on its job."""
        if call.state == _QUEUED:
            call.state = _DONE
            self._queued -= 1
            self._cancelled += 1
        if call.runner:
            self._retire(call)

    def _time_out(self, call: _Call[T, R]) -> None:
        self._queued -= 1
        self._timed_out += 1
        call.finish(
            None, QueueTimeout(f"Not dispatched within {self.max_queue_wait} seconds, retry later")
        )

    def _retire(self, call: _Call[T, R]) -> None:
        """``call``'s task stops dispatching; the oldest waiting caller takes over."""
        call.runner = False
        self._runners -= 1
        for waiting in self._queue:
            if self._runners >= self.max_concurrent_batches:
                return
            if waiting.state == _QUEUED and not waiting.runner:
                waiting.runner = True
                self._runners += 1
                waiting.event.set()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def _expired(self, call: _Call[T, R], now: float) -> bool:
        return self.max_queue_wait is not None and now - call.arrived >= self.max_queue_wait

    async def _next_batch(self, own: _Call[T, R]) -> list[_Call[T, R]]:
        """Wait until a batch may leave (see the class docstring), then take it out of
        the queue. Returns [] when nothing is queued, or when ``own`` was dispatched by
        another runner or timed out meanwhile."""
        queue = self._queue
        if self._gatherer is own:
            # The first call to an idle batcher: the tasks already scheduled in this turn
            # of the loop (the rest of a gather) queue their calls first. Without it the
            # first call would leave alone, and with a function that never awaits, no
            # two calls would share a batch.
            try:
                if self._queued < self.max_batch_size and not self._flush:
                    await anyio.lowlevel.checkpoint()
            finally:
                self._gatherer = None
                self._wake()
        while True:
            while queue and queue[0].state != _QUEUED:
                queue.popleft()
            if not queue:
                return []
            if self._queued >= self.max_batch_size or self._flush:
                break
            if self._running == 0:
                if self._gatherer is None:
                    break
                # Another runner (a second slot) takes that turn: wait for its end.
                if self._wakeup is None:
                    self._wakeup = anyio.Event()
                await self._wakeup.wait()
                if own.state != _QUEUED:
                    return []  # it took our item
                continue
            now = anyio.current_time()
            timeout = queue[0].arrived + self.max_wait - now
            if timeout <= 0:
                break
            if own.state == _QUEUED and self.max_queue_wait is not None:
                timeout = min(timeout, own.arrived + self.max_queue_wait - now)
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._wakeup.wait()
            if own.state != _QUEUED:
                return []  # another runner dispatched our item: let someone else wait
            if self._expired(own, anyio.current_time()):
                self._time_out(own)
                return []
        now = anyio.current_time()
        batch: list[_Call[T, R]] = []
        while queue and len(batch) < self.max_batch_size:
            call = queue.popleft()
            if call.state != _QUEUED:
                continue
            if self._expired(call, now):
                self._time_out(call)
                continue
            call.state = _RUNNING
            batch.append(call)
        self._queued -= len(batch)
        return batch

    async def _run(self, batch: list[_Call[T, R]], own: _Call[T, R]) -> None:
        """Call ``func`` on the batch and deliver every result; shielded, so a batch
        always completes once dispatched."""
        items = [call.item for call in batch]
        self._running += 1
        self._batches += 1
        self._items += len(batch)
        self._batch_sizes[len(batch)] = self._batch_sizes.get(len(batch), 0) + 1
        began = anyio.current_time()
        error: BaseException | None = None
        results: Sequence[R] = ()
        with anyio.CancelScope(shield=True):
            try:
                if self._is_async:
                    results = await cast(Callable[[list[T]], Awaitable[Sequence[R]]], self.func)(
                        items
                    )
                else:
                    results = await _start_in_thread(
                        cast(Callable[[list[T]], Sequence[R]], self.func), items
                    )
            except Exception as exc:
                error = exc
            except BaseException:
                self._batch_done(batch, own, began, RuntimeError("the batch was interrupted"))
                raise
        if error is None:
            try:
                count = len(results)
            except TypeError:
                count = -1
            if count != len(batch):
                error = RuntimeError(
                    f"batch function {_name(self.func)} returned "
                    f"{count if count >= 0 else 'no'} results for {len(batch)} items; "
                    f"it must return one result per item, in order"
                )
        self._batch_done(batch, own, began, error)
        if error is None:
            for call, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    call.finish(None, result)
                else:
                    call.finish(result, None)

    def _batch_done(
        self,
        batch: list[_Call[T, R]],
        own: _Call[T, R],
        began: float,
        error: BaseException | None,
    ) -> None:
        self._running -= 1
        self._batch_seconds += anyio.current_time() - began
        # The next batch is dispatched by another caller's task: wake it before this
        # batch's callers, so the model is not idle while their responses go out.
        if own.runner and own.state == _RUNNING:
            self._retire(own)
        self._wake()
        if error is not None:
            self._failed_batches += 1
            for call in batch:
                call.finish(None, error)

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
        self._wake()
        while self._callers:
            returned = self._returned = anyio.Event()
            await returned.wait()
            self._returned = None

    def __repr__(self) -> str:
        return (
            f"<Batcher {_name(self.func)} max_batch_size={self.max_batch_size} "
            f"max_concurrent_batches={self.max_concurrent_batches} queued={self._queued} "
            f"running={self._running}>"
        )


async def _start_in_thread(func: Callable[[list[T]], Sequence[R]], items: list[T]) -> Sequence[R]:
    """``run_to_the_end(func, items)``, but on asyncio the thread starts before this
    task yields. Call it shielded from cancellation.

    ``anyio.to_thread`` first yields to the event loop, so every task woken before runs
    first: the callers of the batch that just finished would send all their responses
    (milliseconds for 32 of them) before the next batch reaches the model. Here the batch
    goes to the loop's default executor at once, holding a token of the shared limiter;
    with no token free (or on trio) it queues for the pool like any other hand-off.
    """
    if running_on_asyncio():
        limiter = threadpool_limiter()
        borrower = object()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            pass
        else:
            try:
                context = contextvars.copy_context()
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, context.run, func, items)
            finally:
                limiter.release_on_behalf_of(borrower)
    return await run_to_the_end(func, items)


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_seconds(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__
