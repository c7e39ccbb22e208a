"""The shared thread pool: run blocking code without blocking the event loop.

Every thread hand-off in asgikit (sync endpoints, sync streaming iterators, sync
background tasks, `run_in_threadpool`) goes through one `anyio.CapacityLimiter` per event
loop, sized by `set_threadpool_size` (default 40 threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from anyio.lowlevel import RunVar
from typing_extensions import ParamSpec

from asgikit.exceptions import ClientDisconnect

try:  # trio depends on sniffio, so it is there whenever trio can run
    import sniffio
except ImportError:  # pragma: no cover - asyncio-only installs
    sniffio = None  # type: ignore[assignment]

P = ParamSpec("P")
T = TypeVar("T")

_DEFAULT_THREADS = 40
_threadpool_size = _DEFAULT_THREADS
_limiter: RunVar[anyio.CapacityLimiter] = RunVar("asgikit_threadpool_limiter")
logger = logging.getLogger("asgikit")


def set_threadpool_size(max_threads: int) -> None:
    """Set how many threads may run offloaded work at once (default 40).

    Takes effect at once for event loops that already use the pool, and for new ones.
    Size it to what the blocking work can use: CPU-bound model code gains nothing past
    the number of cores unless it releases the GIL; I/O-bound code can use more.
    """
    global _threadpool_size
    if max_threads < 1:
        raise ValueError("max_threads must be at least 1")
    _threadpool_size = max_threads
    # No event loop running, or none has used the pool yet: nothing to update.
    with contextlib.suppress(LookupError, RuntimeError):
        _limiter.get().total_tokens = max_threads


def running_on_asyncio() -> bool:
    """True when the current task runs on asyncio (the way anyio itself decides)."""
    if sniffio is not None:
        try:
            return sniffio.current_async_library() == "asyncio"
        except sniffio.AsyncLibraryNotFoundError:
            return False
    return asyncio._get_running_loop() is not None


def threadpool_limiter() -> anyio.CapacityLimiter:
    """The `anyio.CapacityLimiter` shared by every thread hand-off on this event loop."""
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_threadpool_size)
        _limiter.set(limiter)
        return limiter


class ClientLeaving:
    """What a client leaving cancels under ``cancel_on_disconnect`` in an anyio cancel
    scope (trio; `asgikit._dispatch`): the endpoint's scope, and the `run_in_threadpool`
    waits of the endpoint's own task. Those waits are shielded from every other
    cancellation (a timeout still waits for the thread); this one ends them."""

    __slots__ = ("endpoint_running", "scope", "task_id", "waits")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.task_id = anyio.get_current_task().id
        # Until the endpoint returns: then tasks holding a copy of the context see an
        # inert one (a later task may get the same id, the id of a freed task).
        self.endpoint_running = True
        self.waits: set[anyio.CancelScope] = set()

    def cancel(self) -> None:
        """The client has left (the scope's ``cancel_called`` says so from then on)."""
        self.scope.cancel()
        for wait in self.waits:
            wait.cancel()


# The request's `ClientLeaving` while its endpoint runs. Tasks the endpoint starts copy
# it: they are told apart by the task's id (and, once the endpoint returned, by
# ``endpoint_running``), and wait for their threads as usual.
client_leaving: ContextVar[ClientLeaving | None] = ContextVar(
    "asgikit_client_leaving", default=None
)


async def run_in_threadpool(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func(*args, **kwargs)`` in the shared thread pool and return its result.

    The event loop keeps serving other requests meanwhile. Cancelling the caller does
    not stop the thread (Python cannot interrupt it); the result is then discarded.

    - An endpoint whose client left under ``cancel_on_disconnect`` stops waiting at
      once, on asyncio and trio alike; the thread runs on. On trio it keeps its pool
      slot until it returns; on asyncio the slot is given back at once (each such
      thread runs beside the pool's limit until it returns).
    - A caller cancelled through anyio for any other reason (`TimeoutMiddleware`, a
      cancel scope) waits for the thread to return first, so the pool's limit holds and
      nothing the call works on is closed under it; a native asyncio cancellation
      (``Task.cancel()``, ``asyncio.wait_for``) stops waiting at once.
    """
    call: Callable[..., T] = functools.partial(func, **kwargs) if kwargs else func
    leaving = client_leaving.get()
    if (
        leaving is not None
        and leaving.endpoint_running
        and leaving.task_id == anyio.get_current_task().id
    ):
        return await _wait_unless_client_leaves(leaving, call, args)
    return await run_to_the_end(call, *args)


async def _wait_unless_client_leaves(
    leaving: ClientLeaving, func: Callable[..., T], args: tuple[Any, ...]
) -> T:
    # A cancellation already under way wins, as it does without the shield below (a
    # timed-out endpoint that calls again, in a loop or in a finally, gets it here).
    await anyio.lowlevel.checkpoint_if_cancelled()
    with anyio.CancelScope(shield=True) as wait:  # (from a timeout, say: see above)
        leaving.waits.add(wait)
        if leaving.scope.cancel_called:  # (left already; a scope of the endpoint shields it)
            wait.cancel()
        try:
            return await anyio.to_thread.run_sync(
                func, *args, abandon_on_cancel=True, limiter=threadpool_limiter()
            )
        finally:
            leaving.waits.discard(wait)
    # The client left: the thread runs on and its result is dropped. The endpoint's
    # cancellation goes on here, or, if a scope of its own shields it, this ends it.
    await anyio.lowlevel.checkpoint()
    raise ClientDisconnect


async def run_to_the_end(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args)`` in the shared thread pool; a caller cancelled through anyio waits
    for the thread to return, whatever the request's ``cancel_on_disconnect``.

    Internal: for work whose caller must not go on before it is over, a write to a file
    that is then closed or removed, a close, a planning step that opens a file, or a
    background task's function."""
    if kwargs:
        func = functools.partial(func, **kwargs)
    return await anyio.to_thread.run_sync(func, *args, limiter=threadpool_limiter())


class _StopIteration(Exception):
    """Carries the end of a sync iterator out of a worker thread."""


class StepsThenClose:
    """Work on one resource done in worker-thread steps, one step at a time, and a close
    that runs exactly once and never during a step.

    A caller cancelled while it waits for a step stops waiting at once (asyncio's native
    cancellation does not wait for the thread), but the step runs on: Python cannot
    interrupt it. Closing the resource then, from another thread, would close it under
    the step's feet (a generator: "generator already executing", its ``finally``
    skipped; a file descriptor: read after it was closed, or its number reused). So
    `close` called while a step runs only asks for the close, and the step's thread
    closes the resource as soon as the step returns; the step's result is dropped.
    Nobody waits for that step: one that never returns holds its thread, not the
    request. A close that fails there is logged. A step asked for after the close
    raises `ResourceClosed`. `run` makes a step in the shared pool that a cancelled
    caller stops waiting for at once, on every backend.
    """

    __slots__ = ("close_asked", "closed", "closer", "lock", "stepping")

    def __init__(self, closer: Callable[[], object]) -> None:
        self.closer = closer
        self.lock = threading.Lock()  # guards the three flags, never held during a step
        self.stepping = False
        self.closed = False
        self.close_asked = False

    def step(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``func(*args, **kwargs)``, as the one step running now (in a worker thread)."""
        with self.lock:
            if self.closed:
                raise ResourceClosed
            self.stepping = True
        try:
            return func(*args, **kwargs)
        finally:
            with self.lock:
                self.stepping = False
                close_now = self.close_asked
            if close_now:  # asked for while this step ran; its caller has gone
                try:
                    self.closer()
                except Exception:
                    logger.exception("Closing %r after its caller left failed", self.closer)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` as one step, in the shared thread pool. A cancelled caller
        stops waiting at once (asyncio and trio alike); the step runs on."""
        step = functools.partial(self.step, func, *args)
        return await anyio.to_thread.run_sync(
            step, abandon_on_cancel=True, limiter=threadpool_limiter()
        )

    def close(self) -> None:
        """Close now (where the caller runs: a worker thread if closing may block), or
        leave it to the step that runs."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.stepping:
                self.close_asked = True
                return
        self.closer()


class ResourceClosed(Exception):
    """A step was asked for after `StepsThenClose.close`."""


def _next(iterator: Iterator[T]) -> T:
    try:
        return next(iterator)
    except StopIteration:
        raise _StopIteration from None


def _nothing() -> None:
    pass


async def iterate_in_threadpool(iterable: Iterable[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterable in the shared thread pool, one item per hand-off.

    When this async generator is closed early (``aclose()``, ``contextlib.aclosing``,
    or a streaming response whose client left) the iterator's ``close()`` runs in the
    pool, so a generator's ``finally`` block executes. If it was cancelled while the
    iterator was computing an item (a thread cannot be interrupted), the cancellation
    takes effect at once and the close comes right after that item, in its thread.
    """
    iterator = iter(iterable)
    close: Callable[[], object] | None = getattr(iterator, "close", None)
    steps = StepsThenClose(close or _nothing)
    try:
        while True:
            try:
                item = await steps.run(_next, iterator)
            except (_StopIteration, ResourceClosed):
                return
            yield item
    finally:
        if close is not None:  # (nothing to close: no hand-off)
            with anyio.CancelScope(shield=True):
                await run_to_the_end(steps.close)


def _consume_result(task: asyncio.Task[None]) -> None:
    # Helpers catch their errors; this only keeps asyncio from warning about a task
    # cancelled before it ever ran.
    if not task.cancelled():
        task.exception()


class HelperTasks:
    """Short helper tasks that run beside the current task and are stopped when it is
    done with them (a disconnect listener, a keep-alive pinger, a watchdog).

    On asyncio they are plain tasks, cancelled on exit without waiting for the next loop
    iteration: an anyio task group costs ~10x more per response than the rest of a short
    stream. Elsewhere (trio) they live in an anyio task group. Helpers must not raise
    (they catch their errors and report them), so nothing is lost by not awaiting them.
    """

    __slots__ = ("handles", "task_group", "tasks")

    async def __aenter__(self) -> HelperTasks:
        self.tasks: list[asyncio.Task[None]] | None = None
        self.handles: list[asyncio.TimerHandle] = []
        self.task_group: anyio.abc.TaskGroup | None = None
        if running_on_asyncio():
            self.tasks = []
        else:
            self.task_group = anyio.create_task_group()
            await self.task_group.__aenter__()
        return self

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self.tasks is not None:
            task = asyncio.get_running_loop().create_task(func(*args))
            task.add_done_callback(_consume_result)
            self.tasks.append(task)
        else:
            assert self.task_group is not None
            self.task_group.start_soon(func, *args)

    def start_after(
        self, delay: float, func: Callable[..., Coroutine[Any, Any, None]], *args: Any
    ) -> None:
        """Start ``func(*args)`` once ``delay`` seconds have passed, unless the helpers
        are done by then (asyncio; elsewhere it starts at once). A short response never
        pays for the task; a long one gets it after ``delay``."""
        if self.tasks is not None:
            self.handles.append(
                asyncio.get_running_loop().call_later(delay, self.start_soon, func, *args)
            )
        else:
            self.start_soon(func, *args)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.tasks is not None:
            for handle in self.handles:
                handle.cancel()
            for task in self.tasks:
                task.cancel()
        else:
            assert self.task_group is not None
            self.task_group.cancel_scope.cancel()
            await self.task_group.__aexit__(None, None, None)
