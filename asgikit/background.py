"""Background tasks: work that runs after the response body has been sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from typing_extensions import ParamSpec

from asgikit._concurrency import run_to_the_end
from asgikit._inspect import is_async_callable

__all__ = ["BackgroundTask", "BackgroundTasks"]

P = ParamSpec("P")
logger = logging.getLogger("asgikit")


class BackgroundTask:
    """Call ``func(*args, **kwargs)`` once the response has been sent.

    ``func`` may be ``async def`` or a plain function (run in the shared thread pool).
    An exception it raises is logged on the ``asgikit`` logger and goes no further: the
    response has already been sent, and the server has nothing to do about it.

    >>> response = Response("queued", background=BackgroundTask(send_email, to="a@b.c"))
    """

    def __init__(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async_callable(func)

    async def __call__(self) -> None:
        try:
            if self.is_async:
                await self.func(*self.args, **self.kwargs)
            else:
                await run_to_the_end(self.func, *self.args, **self.kwargs)
        except Exception:
            name = getattr(self.func, "__qualname__", repr(self.func))
            logger.exception("Exception in background task %s", name)


class BackgroundTasks(BackgroundTask):
    """An ordered list of background tasks, run one after the other.

    An exception in one task is logged and the tasks after it still run; the response
    already sent is untouched.

    >>> tasks = BackgroundTasks(); tasks.add_task(log_prediction, result)
    """

    def __init__(self, tasks: list[BackgroundTask] | None = None) -> None:
        self.tasks = list(tasks) if tasks else []

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Append ``func(*args, **kwargs)`` to the tasks."""
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    async def __call__(self) -> None:
        for task in self.tasks:
            await task()
