"""Callable inspection: which callables are awaited and which go to the thread pool."""

from __future__ import annotations

import functools

from asgikit._inspect import is_async_callable


async def coroutine_function(x: int) -> int:
    return x


def plain(x: int) -> int:
    return x


class AsyncCall:
    async def __call__(self) -> None:
        pass


class SyncCall:
    def __call__(self) -> None:
        pass


class HasFuncAndArgs:
    """Looks like a partial of an async function, but calling it is synchronous."""

    func = coroutine_function
    args = (1,)

    def __call__(self) -> None:
        pass


def test_async_functions_partials_and_async_call_are_async() -> None:
    assert is_async_callable(coroutine_function)
    assert is_async_callable(functools.partial(coroutine_function, 1))
    assert is_async_callable(functools.partial(functools.partial(coroutine_function), 1))
    assert is_async_callable(AsyncCall())
    assert is_async_callable(AsyncCall.__call__)


def test_plain_callables_are_not_async() -> None:
    assert not is_async_callable(plain)
    assert not is_async_callable(functools.partial(plain, 1))
    assert not is_async_callable(SyncCall())
    assert not is_async_callable(HasFuncAndArgs())
    assert not is_async_callable(lambda: coroutine_function(1))
    assert not is_async_callable(None)
