"""Callable inspection: is calling this object going to give a coroutine?

The router, the exception handlers, background tasks and the Batcher all decide once, at
registration, whether to ``await`` a callable or run it in the thread pool. This is the
one place that decides it (pure: no I/O, no event loop).
"""

from __future__ import annotations

import functools
import inspect

__all__ = ["is_async_callable"]


def is_async_callable(obj: object) -> bool:
    """True for an ``async def`` function, a `functools.partial` of one (however deeply
    nested), or an object whose ``__call__`` is ``async def``.

    A plain function that happens to return an awaitable is not async here: it is called
    in the thread pool like any other blocking callable.
    """
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004
    )
