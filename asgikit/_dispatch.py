"""Running a matched HTTP route: call, convert, answer errors, HEAD, background, release.

The router (`asgikit.routing`) finds the route; this module runs it, and is the only
place that does. One request goes:

1. `run_route` builds the `Request` and calls the endpoint (``async def`` awaited, a
   plain ``def`` in the shared thread pool).
2. The return value is converted (`asgikit._errors.to_response`); an exception is
   answered through the exception handlers (`asgikit._errors.error_response`).
3. The response is called. A plain `Response` (body known up front) is called
   directly; anything else (streams, files, user ASGI apps) goes through a
   `StartTracker`, so an error raised before its ``http.response.start`` can still be
   answered with a 500, and one raised after it is only logged and re-raised.
4. The request is released (uploaded files closed), even when cancelled.

``HEAD`` requests get a ``send`` that drops the body (`strip_body`); the background task
of a response runs inside the response's own ``__call__``. Route and router middleware
wrap `run_route` and are guarded by `call_guarded`: an error they raise before any
response started is answered like an endpoint's.

The common case (an ``async def`` endpoint returning a plain `Response`, no form) costs
one coroutine frame here and nothing else: no wrapper, no tracker, no task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from asgikit._concurrency import run_in_threadpool
from asgikit._errors import (
    ErrorPolicy,
    any_debug,
    error_response,
    log_error,
    server_error_response,
    to_response,
)
from asgikit.exceptions import ClientDisconnect
from asgikit.requests import Request
from asgikit.responses import Response
from asgikit.types import ASGIApp, Message, Receive, Scope, Send, StartTrackingSend

__all__ = ["Runnable", "StartTracker", "call_guarded", "run_route", "strip_body"]


class Runnable(Protocol):
    """What `run_route` needs of a route."""

    endpoint: Callable[[Request], Any]
    is_async: bool


class StartTracker(StartTrackingSend):
    """Forwards messages and remembers whether ``http.response.start`` went out."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)

    @property
    def send_after_start(self) -> Send:
        """Where body messages may go directly once the start went out: nothing is left
        to track then (streaming responses use it to skip this wrapper per chunk)."""
        return self.send if self.started else self


def strip_body(send: Send) -> Send:
    """A ``send`` for ``HEAD`` requests: headers go out unchanged, the body does not."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return send_head


_PLAIN_CALL = Response.__call__
_new_object = object.__new__


def routers_of(router: ErrorPolicy, scope: Scope) -> tuple[ErrorPolicy, ...]:
    """The routers whose exception handlers apply: ``router``, then those it is mounted
    in, nearest first."""
    return (router, *scope.get("asgikit.routers", ()))


async def run_route(
    route: Runnable, router: ErrorPolicy, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run ``route`` for one HTTP request and send its response (or its error's)."""
    # Request(scope, receive) without re-checking the scope type: the router did.
    request: Request = _new_object(Request)
    request.scope = scope
    request.receive = receive
    try:
        if route.is_async:
            result = await route.endpoint(request)
        else:
            result = await run_in_threadpool(route.endpoint, request)
    except Exception as exc:
        await _respond(request, None, exc, send, router)
        return
    except BaseException:  # cancelled (timeout, shutdown): still release it
        await _release(request)
        raise
    # (``request._form is None`` is `_holds_resources`, inlined: this is the hot path.)
    if result.__class__.__call__ is _PLAIN_CALL and request._form is None:
        # A complete body: anything raised from here on (send failing, a background
        # task) happens after the response started.
        try:
            await result(scope, receive, send)
        except Exception as exc:
            _after_start(exc)
            raise
        return
    await _respond(request, result, None, send, router)


async def _respond(
    request: Request, result: Any, error: Exception | None, send: Send, router: ErrorPolicy
) -> None:
    """Send the endpoint's ``result`` (or the answer to its ``error``), then release
    the request. Unhandled errors are re-raised once answered."""
    scope, receive = request.scope, request.receive
    unhandled: Exception | None = None
    try:
        if error is not None:
            if isinstance(error, ClientDisconnect):
                return
            response, unhandled = await error_response(request, error, routers_of(router, scope))
        else:
            try:
                response = result if isinstance(result, Response) else to_response(result)
            except Exception as exc:
                response, unhandled = await error_response(request, exc, routers_of(router, scope))
        if type(response).__call__ is _PLAIN_CALL:
            try:
                await response(scope, receive, send)
            except Exception as exc:
                _after_start(exc)
                raise
        else:
            tracker = StartTracker(send)
            try:
                await response(scope, receive, tracker)
            except ClientDisconnect:
                return
            except Exception as exc:
                if isinstance(exc, OSError) and tracker.started:
                    raise  # the server's send failed: the client has gone
                log_error(exc)
                if not tracker.started:
                    debug = any_debug(routers_of(router, scope))
                    with contextlib.suppress(OSError):
                        await server_error_response(exc, debug)(scope, receive, tracker)
                raise
        if unhandled is not None:
            raise unhandled
    finally:
        await _release(request)


async def call_guarded(
    app: ASGIApp, router: ErrorPolicy, scope: Scope, receive: Receive, send: Send
) -> None:
    """Call ``app`` (middleware, a mounted app) for an HTTP request. An error it raises
    before any response started is answered like an endpoint's: exception handlers,
    else a 500 (logged, then re-raised to the server)."""
    tracker = StartTracker(send)
    try:
        await app(scope, receive, tracker)
    except ClientDisconnect:
        return
    except Exception as exc:
        if tracker.started:  # an inner layer answered (through this send) or it was cut
            raise
        routers = routers_of(router, scope)
        response, unhandled = await error_response(Request(scope, receive), exc, routers)
        with contextlib.suppress(OSError):
            await response(scope, receive, tracker)
        if unhandled is None:
            return
        if unhandled is exc:
            raise
        raise unhandled from exc


def _after_start(exc: Exception) -> None:
    """Note an error raised once the response had started (no second start)."""
    if not isinstance(exc, OSError):
        log_error(exc)


def _holds_resources(request: Request) -> bool:
    """Whether the request holds something to release (a parsed form's files)."""
    return request._form is not None


async def _release(request: Request) -> None:
    """Close what the request holds (uploaded files), even inside a cancelled scope."""
    if _holds_resources(request):
        with anyio.CancelScope(shield=True):
            await request.close()
