"""The ASGI lifespan protocol around a list of lifespan context managers.

A router's lifespan and those of the routers mounted in it are entered in order (outer
first) and exited in reverse; what they yield is merged into one state mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeAlias

from asgikit.types import Receive, Scope, Send

Lifespan: TypeAlias = Callable[
    [Any], contextlib.AbstractAsyncContextManager[Mapping[str, Any] | None]
]


@contextlib.asynccontextmanager
async def enter_lifespans(lifespans: list[tuple[Lifespan, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Enter ``lifespan(router)`` for each pair; yield the merged state they yielded."""
    state: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        for lifespan, router in lifespans:
            context = lifespan(router)
            if not hasattr(context, "__aenter__"):
                raise TypeError(
                    "lifespan must be an async context manager factory, e.g. a function "
                    "decorated with @contextlib.asynccontextmanager"
                )
            value = await stack.enter_async_context(context)
            if value is not None:
                if not isinstance(value, Mapping):
                    raise TypeError(f"lifespan must yield a mapping or None, not {value!r}")
                state.update(value)
        yield state


async def serve_lifespan(
    lifespans: list[tuple[Lifespan, Any]],
    scope: Scope,
    receive: Receive,
    send: Send,
    publish: Callable[[dict[str, Any]], None],
) -> None:
    """Answer ``lifespan.startup`` and ``lifespan.shutdown`` around the lifespans.

    The merged state goes into ``scope["state"]`` (the ASGI state extension) and to
    ``publish`` (for servers without that extension); ``publish({})`` after shutdown.
    A failure sends ``lifespan.startup.failed`` or ``lifespan.shutdown.failed`` with the
    error text, then re-raises.
    """
    started = False
    await receive()  # lifespan.startup
    try:
        async with enter_lifespans(lifespans) as state:
            publish(dict(state))
            if state and isinstance(scope.get("state"), dict):
                scope["state"].update(state)
            await send({"type": "lifespan.startup.complete"})
            started = True
            await receive()  # lifespan.shutdown
            publish({})
    except BaseException as exc:
        publish({})
        text = str(exc) or type(exc).__name__
        if started:
            await send({"type": "lifespan.shutdown.failed", "message": text})
        else:
            await send({"type": "lifespan.startup.failed", "message": text})
        raise
    await send({"type": "lifespan.shutdown.complete"})
