"""The ASGI lifespan protocol around a list of lifespan context managers, and the
per-request state it seeds.

A router's lifespan and those of the routers mounted in it are entered in order (outer
first) and exited in reverse; what they yield is merged into one state mapping. Each
request's ``request.state`` starts from it (`request_state`): through the server's
``scope["state"]`` (the ASGI lifespan state extension), else through the router's
``lifespan_state`` copy. A server that never ran the lifespan (daphne) is reported once
(`warn_lifespan_not_run`) and named by the error a missing state attribute raises.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeAlias

from asgikit.datastructures import State
from asgikit.exceptions import LifespanNotRunError
from asgikit.types import Receive, Scope, Send

logger = logging.getLogger("asgikit")

_NOT_RUN = (
    "the app has a lifespan but the lifespan did not run: does the server support "
    "lifespan? (daphne does not; uvicorn needs --lifespan on or auto, hypercorn runs it)"
)

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
    error text, logs the error with its traceback (logger ``asgikit``), then re-raises.
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
        if isinstance(exc, Exception):  # (not a cancellation)
            # Servers print only the message ("'model_path'" for a KeyError) and, once
            # told, log nothing of the exception: its type and traceback go out here.
            phase = "shutdown" if started else "startup"
            logger.error("Lifespan %s failed", phase, exc_info=exc)
        if started:
            await send({"type": "lifespan.shutdown.failed", "message": text})
        else:
            await send({"type": "lifespan.startup.failed", "message": text})
        raise
    await send({"type": "lifespan.shutdown.complete"})


class _StateWithoutLifespan(State):
    """`State` of an app whose lifespan should have filled it but did not run."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self._state[name]
        except KeyError:
            message = f"request.state has no attribute {name!r}: {_NOT_RUN}"
            raise LifespanNotRunError(message) from None


def warn_lifespan_not_run() -> None:
    """Log, once per app, that the server skipped the lifespan (called on the first request)."""
    logger.warning("No lifespan startup before the first request: %s", _NOT_RUN)


def request_state(scope: Scope) -> State:
    """The state a request starts with: the server's ``scope["state"]`` when it holds
    anything, else a copy of what the top router's lifespan yielded.

    Servers without the lifespan state extension pass no ``state``; some (Ray Serve)
    pass an empty one: both fall back on the router's ``lifespan_state``. When the
    router has a lifespan that never ran, a missing attribute raises
    `LifespanNotRunError` saying so.
    """
    state: dict[str, Any] | None = scope.get("state")
    if state:
        return State(state)
    router = scope.get("router")
    fallback: dict[str, Any] | None = getattr(router, "lifespan_state", None)
    if state is None:
        state = scope["state"] = dict(fallback) if fallback else {}
    elif fallback:
        state.update(fallback)
    if not fallback:
        lifespan_missing = getattr(router, "_lifespan_missing", None)
        if lifespan_missing is not None and lifespan_missing():
            return _StateWithoutLifespan(state)
    return State(state)
