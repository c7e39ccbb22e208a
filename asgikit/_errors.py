"""Exception handlers, and the responses that errors and return values become.

`asgikit._dispatch` decides *when* an error is answered; this module says *with what*:
which registered handler fits an exception (`error_response`: this router's handlers,
then those of the routers it is mounted in), the default JSON error bodies, the 500, and
the conversion of an endpoint's return value into an ASGI callable.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias

from asgikit._concurrency import run_in_threadpool
from asgikit._inspect import is_async_callable
from asgikit.exceptions import HTTPException
from asgikit.requests import Request
from asgikit.responses import JSONResponse, PlainTextResponse, Response

_ExceptionGroup: type[Exception]
if sys.version_info >= (3, 11):
    _ExceptionGroup = ExceptionGroup  # noqa: F821 - a builtin from 3.11 on
else:  # the backport, which anyio requires (and raises its groups as) on 3.10
    _ExceptionGroup = importlib.import_module("exceptiongroup").ExceptionGroup

ExceptionHandler: TypeAlias = Callable[[Request, Any], Any]

logger = logging.getLogger("asgikit")


class ExceptionHandlers:
    """One router's handlers, by status code (for `HTTPException`) and by class."""

    __slots__ = ("by_class", "by_status")

    def __init__(self) -> None:
        self.by_status: dict[int, ExceptionHandler] = {}
        self.by_class: dict[type[BaseException], ExceptionHandler] = {}

    def add(self, key: int | type[BaseException], handler: ExceptionHandler) -> None:
        if isinstance(key, bool) or not (
            isinstance(key, int) or (isinstance(key, type) and issubclass(key, BaseException))
        ):
            raise TypeError(
                f"exception handler key must be a status code or exception class, not {key!r}"
            )
        if isinstance(key, int):
            self.by_status[key] = handler
        else:
            self.by_class[key] = handler

    def for_http(self, exc: HTTPException) -> ExceptionHandler | None:
        """The handler for an `HTTPException`: by its status code, else by its class."""
        return self.by_status.get(exc.status_code) or self.for_class(exc)

    def for_class(self, exc: Exception) -> ExceptionHandler | None:
        """The handler of the most specific class of ``exc``. ``Exception`` itself is the
        catch-all for unhandled errors (`for_unhandled`), not a class handler."""
        handlers = self.by_class
        if handlers:
            for cls in type(exc).__mro__:
                if cls is Exception:
                    return None
                handler = handlers.get(cls)
                if handler is not None:
                    return handler
        return None

    def for_unhandled(self) -> ExceptionHandler | None:
        """The handler that shapes a 500: registered for ``500`` or for ``Exception``."""
        return self.by_status.get(500) or self.by_class.get(Exception)


async def call_handler(handler: ExceptionHandler, request: Request, exc: Exception) -> Any:
    """Run ``handler(request, exc)`` (a plain ``def`` in the thread pool) and convert
    its return value like an endpoint's."""
    if is_async_callable(handler):
        result = await handler(request, exc)
    else:
        result = await run_in_threadpool(handler, request, exc)
    return result if isinstance(result, Response) else to_response(result)


def default_error_response(exc: HTTPException) -> Response:
    """``{"detail": ...}`` as JSON with the exception's status and headers."""
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def server_error_response(exc: BaseException, debug: bool) -> Response:
    """The 500: a plain-text traceback in debug mode, else no detail at all."""
    if debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return PlainTextResponse(text, status_code=500)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)


def to_response(result: Any) -> Any:
    """Turn an endpoint's return value into something to call as an ASGI app.

    ``dict``/``list`` -> JSON, ``str`` -> text, ``bytes`` -> `Response`, ``None`` -> 204,
    an ASGI callable as it is; anything else raises `TypeError`.
    """
    if isinstance(result, (dict, list)):
        return JSONResponse(result)
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result))
    if result is None:
        return Response(status_code=204)
    if callable(result) and not inspect.isclass(result):
        return result
    raise TypeError(
        f"an endpoint returned {type(result).__name__}; return a Response (or any ASGI app), "
        "a dict or list (JSON), str, bytes or None"
    )


class ErrorPolicy(Protocol):
    """What error resolution needs of a router: its handlers and its debug flag."""

    debug: bool
    _handlers: ExceptionHandlers


def log_error(exc: BaseException) -> None:
    """Log an error the server will also hear about (or that happened too late to answer)."""
    logger.error("Exception in ASGI application", exc_info=exc)


async def error_response(
    request: Request, exc: Exception, routers: Sequence[ErrorPolicy]
) -> tuple[Any, Exception | None]:
    """The response for ``exc`` raised while answering ``request``, and the exception to
    re-raise once it is sent (unhandled errors: the server must hear about them).

    Handlers are looked up in ``routers`` in order (the router that matched, then the
    routers it is mounted in, nearest first); within one router the most specific class
    wins. An `HTTPException` nobody handles gets `default_error_response`; so does an
    exception group of nothing but `HTTPException` (`only_http_exceptions`). Any other
    unhandled error is logged and answered 500 (a ``500`` or ``Exception`` handler may
    shape it), then re-raised.
    """
    handler: ExceptionHandler | None
    if isinstance(exc, _ExceptionGroup):
        exc = only_http_exceptions(exc) or exc
    if isinstance(exc, HTTPException):
        for router in routers:
            handler = router._handlers.for_http(exc)
            if handler is not None:
                return await _handled(handler, request, exc, None, routers)
        return default_error_response(exc), None
    for router in routers:
        handler = router._handlers.for_class(exc)
        if handler is not None:
            return await _handled(handler, request, exc, None, routers)
    log_error(exc)
    for router in routers:
        handler = router._handlers.for_unhandled()
        if handler is not None:
            return await _handled(handler, request, exc, exc, routers)
    return server_error_response(exc, any_debug(routers)), exc


def only_http_exceptions(group: Any) -> HTTPException | None:
    """The first `HTTPException` of an exception group holding nothing else (nested
    groups included), else None.

    A task group (``anyio``, ``asyncio.TaskGroup``) raises what its tasks raised
    wrapped in a group: when every task failed with an `HTTPException` (say a
    `Batcher`'s `Overloaded`), the client gets that answer rather than a 500. A group
    with any other error in it is an error like any other."""
    first: HTTPException | None = None
    for inner in group.exceptions:
        found = only_http_exceptions(inner) if isinstance(inner, _ExceptionGroup) else inner
        if not isinstance(found, HTTPException):
            return None
        if first is None:
            first = found
    return first


async def _handled(
    handler: ExceptionHandler,
    request: Request,
    exc: Exception,
    reraise: Exception | None,
    routers: Sequence[ErrorPolicy],
) -> tuple[Any, Exception | None]:
    """Run ``handler``; a handler that fails itself is logged and answered 500."""
    try:
        return await call_handler(handler, request, exc), reraise
    except Exception as handler_exc:
        log_error(handler_exc)
        return server_error_response(handler_exc, any_debug(routers)), handler_exc


def any_debug(routers: Sequence[ErrorPolicy]) -> bool:
    """Whether any router handling the request is in debug mode."""
    return any(router.debug for router in routers)
