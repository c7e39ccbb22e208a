"""Running a matched HTTP route: call, convert, answer errors, HEAD, background, release.

The router (`asgikit.routing`) finds the route; this module runs it, and is the only
place that does. One request goes:

1. `run_route` builds the `Request` and calls the endpoint (``async def`` awaited, a
   plain ``def`` in the shared thread pool); with ``cancel_on_disconnect``, watched for
   a disconnect (end of this module).
2. The return value is converted (`asgikit._errors.to_response`); an exception is
   answered through the exception handlers (`asgikit._errors.error_response`).
3. The response is called. A response that sends its start before anything can fail
   (a plain `Response`, a `StreamingResponse` and its SSE/NDJSON subclasses) is called
   directly; anything else (files, user ASGI apps) goes through a `StartTracker`, so
   an error raised before its ``http.response.start`` can still be answered with a
   500. An error raised after the start is only logged and re-raised.
4. The request is released (uploaded files closed), even when cancelled.

``HEAD`` requests get a ``send`` that drops the body (`strip_body`); the background task
of a response runs inside the response's own ``__call__``. Route and router middleware
wrap `run_route` and are guarded by `call_guarded`: an error they raise before any
response started is answered like an endpoint's.

The common case (an ``async def`` endpoint returning a plain or streaming response)
costs one coroutine frame here and nothing else: no wrapper, no tracker, no task.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from asyncio import _get_running_loop
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol

import anyio

from asgikit._concurrency import HelperTasks, run_in_threadpool
from asgikit._errors import (
    ErrorPolicy,
    any_debug,
    error_response,
    log_error,
    server_error_response,
    to_response,
)
from asgikit._receive import ReceiveRelay
from asgikit.exceptions import ClientDisconnect
from asgikit.requests import Request
from asgikit.responses import Response
from asgikit.streaming import StreamingResponse
from asgikit.types import ASGIApp, Message, Receive, Scope, Send, StartTrackingSend

__all__ = ["Runnable", "StartTracker", "call_guarded", "run_route", "strip_body"]


class Runnable(Protocol):
    """What `run_route` needs of a route."""

    endpoint: Callable[[Request], Any]
    is_async: bool
    watch_disconnect: bool  # cancel the endpoint if the client leaves (resolved setting)


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


# Responses whose ``__call__`` sends ``http.response.start`` before anything else can
# fail, so an error they raise always comes after the start: `run_route` calls them
# directly, without a `StartTracker`. (Identity of ``__call__``: a subclass that
# overrides it is not known to start first.)
_PLAIN_CALL = Response.__call__
_STREAM_CALL = StreamingResponse.__call__
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
        if not route.watch_disconnect:
            if route.is_async:
                result = await route.endpoint(request)
            else:
                result = await run_in_threadpool(route.endpoint, request)
        else:  # cancel_on_disconnect (see the end of this module)
            if route.is_async:
                coroutine = route.endpoint(request)
            else:
                coroutine = run_in_threadpool(route.endpoint, request)
            if _get_running_loop() is None:  # not asyncio (trio): set up before the call
                result = await _call_in_cancel_scope(coroutine, request)
            else:
                try:
                    # Step it once by hand: most endpoints finish without waiting.
                    pending = coroutine.send(None)
                except StopIteration as done:
                    result = done.value
                else:
                    result = await _watch_from_suspension(coroutine, pending, request)
            if result is _CLIENT_LEFT:
                await _release(request)
                return
    except Exception as exc:
        await _respond(request, None, exc, send, router)
        return
    except BaseException:  # cancelled (timeout, shutdown): still release it
        await _release(request)
        raise
    call = result.__class__.__call__
    if call is _PLAIN_CALL or call is _STREAM_CALL:
        # A response that sends its start before anything else (see `_PLAIN_CALL`):
        # anything raised from here on happens after the response started, so no
        # tracker. Called as the function it is: cheaper than calling the instance.
        try:
            await call(result, scope, receive, send)
        except ClientDisconnect:  # a streamed body read the request and it was cut
            pass
        except Exception as exc:
            _after_start(exc)
            raise
        finally:
            # (`_holds_resources`, inlined: this is the hot path. A stream may parse
            # the form while it runs, so this is looked at after the call.)
            if request._form is not None:
                await _release(request)
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
        if type(response).__call__ in (_PLAIN_CALL, _STREAM_CALL):
            try:
                await response(scope, receive, send)
            except ClientDisconnect:
                return
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


# ---------------------------------------------------------------- cancel on disconnect
#
# A route with cancel_on_disconnect has its endpoint cancelled by a watcher task that
# reads ``receive`` until the client disconnects. The watcher reads through the
# scope's `ReceiveRelay`, the one reader that keeps body messages for the endpoint
# (`Request` reads through it), so it never steals the body.
#
# On asyncio it is cheap by construction: an anyio cancel scope plus a task cost ~3x a
# whole "hello" request, so nothing is set up until the endpoint actually waits. Its
# coroutine is stepped once by hand; if it finishes without suspending (most fast
# endpoints), that was all. If it suspends, the watcher task is started and the value
# the endpoint yielded is passed on to the event loop (`_resume`), as ``await`` would.
# No cancel scope can be entered at that point (the endpoint may have entered its own
# already; scopes must nest), so the watcher cancels the request's task natively,
# ``Task.cancel()``, and takes that cancellation back (``uncancel``) the way
# ``asyncio.timeout`` does; anyio's own scopes let a native cancellation through. A
# native cancellation also ends a shielded wait: an awaited `run_in_threadpool` call
# stops waiting (its thread runs on, Python cannot interrupt it, and its pool slot is
# given back at once: a disconnect may briefly let one more thread run).
#
# The watcher is started only while the endpoint is not itself in the middle of reading
# the body straight from ``receive`` (checked at each suspension): the relay did not
# exist when that read began. A body read notices a disconnect anyway
# (`ClientDisconnect`). On trio everything is set up before the call: a cancel scope,
# a task group and the relay.

_CLIENT_LEFT: Any = object()  # the endpoint's "result" once cancelled by a disconnect


async def _watch_from_suspension(
    coroutine: Coroutine[Any, Any, Any], pending: Any, request: Request
) -> Any:
    """Go on awaiting ``coroutine`` (stepped once, now waiting on ``pending``) with a
    watcher; its result, or `_CLIENT_LEFT` if the client disconnected first (the
    endpoint was then cancelled: its ``finally`` blocks ran)."""
    watch = _Watch(request)
    try:
        result = await _resume(coroutine, pending, watch.start_if_safe)
    except asyncio.CancelledError:
        if watch.cancelled and watch.take_back_cancellation():
            return _CLIENT_LEFT
        raise
    finally:
        watch.stop()
    if watch.cancelled:  # the endpoint swallowed the cancellation: still send nothing
        watch.take_back_cancellation()
        return _CLIENT_LEFT
    return result


async def _call_in_cancel_scope(awaitable: Awaitable[Any], request: Request) -> Any:
    relay = ReceiveRelay.of(request.scope, request.receive)
    result: Any = _CLIENT_LEFT
    with anyio.CancelScope() as cancel_scope:
        async with HelperTasks() as helpers:
            helpers.start_soon(_cancel_on_disconnect, relay, cancel_scope.cancel)
            result = await awaitable
    # Cancelled while shielded (a thread returning) or swallowed: still send nothing.
    return _CLIENT_LEFT if cancel_scope.cancel_called else result


async def _cancel_on_disconnect(relay: ReceiveRelay, cancel: Callable[[], object]) -> None:
    try:
        await relay.watch()
    except Exception:  # a broken receive is the server's business, not a disconnect
        return
    cancel()


class _Watch:
    """One asyncio request's watcher: started at a safe suspension, cancels the task."""

    __slots__ = ("cancelled", "cancelling", "request", "task", "watcher")

    def __init__(self, request: Request) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.request = request
        self.task = task
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        self.cancelling = cancelling() if cancelling is not None else 0
        self.watcher: asyncio.Task[None] | None = None
        self.cancelled = False

    def start_if_safe(self) -> bool:
        """Called at each suspension until it returns True."""
        request = self.request
        # Mid-body: stream() started and has not received the last body message.
        if request._stream_consumed and not (
            request._body_complete or request._body is not None or request._form is not None
        ):
            return False
        relay = ReceiveRelay.of(request.scope, request.receive)
        self.watcher = self.task.get_loop().create_task(_cancel_on_disconnect(relay, self.cancel))
        return True

    def cancel(self) -> None:
        self.cancelled = True
        self.task.cancel()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()

    def take_back_cancellation(self) -> bool:
        """Undo our ``Task.cancel()``; False if another cancellation is pending too
        (a timeout, a shutdown), which must then go on."""
        uncancel = getattr(self.task, "uncancel", None)
        if uncancel is None:  # Python 3.10 counts no cancellations
            return True
        remaining: int = uncancel()
        return remaining <= self.cancelling


@types.coroutine
def _resume(
    steps: Coroutine[Any, Any, Any], pending: Any, on_suspend: Callable[[], bool]
) -> Generator[Any, Any, Any]:
    """Go on awaiting ``steps`` (already stepped once, now waiting on ``pending``), as
    ``yield from`` would; ``on_suspend()`` runs at each suspension until it is True."""
    waiting = True
    while True:
        if waiting:
            waiting = not on_suspend()
        try:
            sent = yield pending
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # cancellation, delivered by throw (asyncio)
            try:
                pending = steps.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                pending = steps.send(sent)
            except StopIteration as done:
                return done.value


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
