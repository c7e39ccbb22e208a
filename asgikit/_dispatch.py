"""Serving a request to a router: match, then run the route, in one coroutine frame.

`serve` is ``Router.__call__``. The router (`asgikit.routing`) keeps its own jobs:
registration, URL reversal, the middleware chain, the switch on the scope type and
matching (`Router._resolve`, a plain call from here), WebSocket and lifespan scopes.
Running a matched HTTP route is this module's, and only this module's. One HTTP
request goes:

1. `serve` notes the top router in the scope, enters the router's middleware chain if
   it has one (the chain ends in `serve` again), and asks the router what answers the
   scope. For HTTP that is the matched route, or an ASGI app (``route.app``) to call
   instead: a route's middleware chain (which ends in `serve` again, with the route), a
   mount, or no route at all (404, 405, a slash redirect). ``HEAD`` is decided when a
   route is added (`run_head`): the route table holds, for ``HEAD``, the route run with
   a ``send`` that drops the body (`strip_body`), so ``GET`` pays nothing for it.
2. It builds the `Request` and calls the endpoint (``async def`` awaited, a plain
   ``def`` in the shared thread pool); with ``cancel_on_disconnect``, watched for a
   disconnect (end of this module).
3. The return value is converted (`asgikit._errors.to_response`); an exception is
   answered through the exception handlers (`asgikit._errors.error_response`).
4. The response is called. A response that sends its start before anything can fail
   (a plain `Response`, a `StreamingResponse` and its SSE/NDJSON subclasses) is called
   directly; anything else (files, user ASGI apps) goes through a `StartTracker`, so
   an error raised before its ``http.response.start`` can still be answered with a
   500. An error raised after the start is only logged and re-raised.
5. The request is released (uploaded files closed), even when cancelled.

The background task of a response runs inside the response's own ``__call__``. Route
and router middleware are guarded by `call_guarded`: an error they raise before any
response started is answered like an endpoint's.

The common case (an ``async def`` endpoint returning a plain or streaming response)
costs this one coroutine frame and nothing else: no wrapper, no tracker, no task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from asgikit._concurrency import ClientLeaving, HelperTasks, client_leaving
from asgikit._errors import (
    ErrorPolicy,
    any_debug,
    error_response,
    log_error,
    server_error_response,
    to_response,
)
from asgikit._receive import ReceiveRelay, reading_body
from asgikit._tasks import NOWHERE, RUNNING, PerLoop
from asgikit.exceptions import ClientDisconnect
from asgikit.requests import Request
from asgikit.responses import Response
from asgikit.streaming import StreamingResponse
from asgikit.types import ASGIApp, Message, Receive, Scope, Send, StartTrackingSend

__all__ = [
    "PAST_MIDDLEWARE",
    "SERVER_SCOPE",
    "Dispatching",
    "Runnable",
    "ServerScope",
    "StartTracker",
    "call_guarded",
    "note_in_server_scope",
    "run_head",
    "serve",
    "strip_body",
    "without_body",
]

# The scope key naming the router whose middleware already ran: the chain ends in that
# router again, which then dispatches.
PAST_MIDDLEWARE = "asgikit.past_middleware"
# The scope key holding a `ServerScope`: set by a router with middleware when the chain
# is entered.
SERVER_SCOPE = "asgikit.server_scope"


class ServerScope:
    """The scope a router with middleware was called with. That middleware may call the
    router again with a copy of the scope (``{**scope}``), while ``scope["route"]``
    belongs in the scope the server passed in: the copy carries this object, and the
    route is noted through it too (`note_in_server_scope`, `asgikit.routing`). Emptied
    when the call returns (the scope holds this object: it must not hold the scope
    longer, or the two would form a cycle)."""

    __slots__ = ("scope",)

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope | None = scope


def note_in_server_scope(scope: Scope) -> None:
    """Copy ``scope["route"]`` (``None`` if unset) into the scope the server passed to
    the router whose middleware made ``scope`` a copy."""
    holder: ServerScope | None = scope.get(SERVER_SCOPE)
    if holder is not None:
        outer = holder.scope
        if outer is not None and outer is not scope:
            outer["route"] = scope.get("route")


class Runnable(Protocol):
    """What `serve` needs of a matched route."""

    # The endpoint as a call returning an awaitable (a plain def: in the thread pool).
    run: Callable[[Request], Awaitable[Any]]
    watch_disconnect: bool  # cancel the endpoint if the client leaves (resolved setting)
    app: ASGIApp | None  # called instead of running the route, when set


class Dispatching(ErrorPolicy, Protocol):
    """What `serve` needs of a router (`asgikit.routing.Router`)."""

    middleware: list[Any]
    _first_request_pending: bool

    def _first_request(self) -> None: ...

    async def _enter_middleware(self, scope: Scope, receive: Receive, send: Send) -> None: ...

    def _resolve(self, scope: Scope) -> Runnable: ...


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


def run_head(router: Dispatching, route: Runnable) -> ASGIApp:
    """How ``route`` answers ``HEAD``: as ``GET``, without the body. (The router stores
    it for ``HEAD`` when the route is added: ``GET`` requests pay nothing for it.)"""
    run = route.app if route.app is not None else functools.partial(serve, router, _route=route)
    return without_body(run)


def without_body(app: ASGIApp) -> ASGIApp:
    """``app`` answering a ``HEAD`` request: its headers go out, its body does not."""

    async def head(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, strip_body(send))

    return head


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
# fail, so an error they raise always comes after the start: `serve` calls them
# directly, without a `StartTracker`. (Identity of ``__call__``: a subclass that
# overrides it is not known to start first.)
_STARTS_FIRST = frozenset({Response.__call__, StreamingResponse.__call__})
_new_object = object.__new__


def routers_of(router: ErrorPolicy, scope: Scope) -> tuple[ErrorPolicy, ...]:
    """The routers whose exception handlers apply: ``router``, then those it is mounted
    in, nearest first."""
    return (router, *scope.get("asgikit.routers", ()))


async def serve(
    router: Dispatching,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    _route: Runnable | None = None,
) -> None:
    """``Router.__call__``: every request to a router enters here, and an HTTP request
    is matched and run in this one coroutine frame.

    The router's own jobs stay the router's (the middleware chain, WebSocket and
    lifespan scopes, matching); running the matched route is this function's, and
    only this function's. A route with route middleware is entered through its chain
    (``route.app``), which ends here again with ``_route`` set: then the route runs
    without being matched twice.
    """
    if _route is None:
        if "router" not in scope:
            scope["router"] = router  # the top router: request.url_for() resolves here
            if router._first_request_pending and scope["type"] != "lifespan":
                router._first_request()
        if not router.middleware:
            route = router._resolve(scope)  # the router's switch on the scope type, matching
        elif scope.get(PAST_MIDDLEWARE) is not router:
            await router._enter_middleware(scope, receive, send)  # ends here again
            return
        else:  # called back by its middleware, perhaps with a copy of the scope
            route = router._resolve(scope)
            note_in_server_scope(scope)
        if route.app is not None:  # not a route to run here: WebSocket, lifespan, route
            await route.app(scope, receive, send)  # middleware, a mount, a 404/405
            return
    else:
        route = _route
    # Request(scope, receive) without re-checking the scope type: done above.
    request: Request = _new_object(Request)
    request.scope = scope
    request.receive = receive
    try:
        if not route.watch_disconnect:  # the common case
            result = await route.run(request)
        else:  # cancel_on_disconnect (see the end of this module)
            awaitable = route.run(request)
            # This thread's loop's `_Watching`, bound while its timer is armed, and the
            # running task (asgikit._tasks).
            watching: _Watching
            running: asyncio.Task[Any] | None
            try:
                watching = _here.state
                running = RUNNING[watching.bound]
            except (AttributeError, KeyError):
                watching, running = _watching_here()  # binds it and arms the timer
            if running is None:  # not asyncio (trio): set up before the call
                result = await _call_in_cancel_scope(awaitable, request)
                if result is _CLIENT_LEFT:
                    await _release(request)
                    return
            else:  # queued for the loop's watching timer; two dict operations if quick
                watching[request] = running
                try:
                    result = await awaitable
                except BaseException:
                    if watching.pop(request, None) is not None or not watching.finish(
                        request, True
                    ):
                        raise
                    await _release(request)  # cancelled by the disconnect: send nothing
                    return
                try:
                    del watching[request]  # the common case: done before any turn
                except KeyError:  # watched, or put off to a later turn
                    if watching.finish(request, False):
                        await _release(request)  # the client left: send nothing
                        return
    except Exception as exc:
        await _respond(request, None, exc, send, router)
        return
    except BaseException:  # cancelled (timeout, shutdown): still release it
        await _release(request)
        raise
    call = result.__class__.__call__
    if call in _STARTS_FIRST:
        # A response that sends its start before anything else (see `_STARTS_FIRST`):
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
        if type(response).__call__ in _STARTS_FIRST:
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
        # (The error's traceback holds this frame: no cycle back to the error.)
        error = unhandled = None
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
# whole "hello" request, so nothing is set up until the endpoint has run for a while.
# The endpoint is awaited as usual; its request is queued in the loop's `_Watching` (a
# dict insert, and a delete when it returns). One timer per loop, armed while requests
# are queued, starts a watcher task for each request that has run for one to two
# `_WATCH_AFTER` turns (the streaming responses start their listeners the same way).
# No cancel scope can be entered then (the endpoint may have entered its own already;
# scopes must nest), so the watcher cancels the request's task natively,
# ``Task.cancel()``, and takes that cancellation back (``uncancel``) the way
# ``asyncio.timeout`` does; anyio's own scopes let a native cancellation through. A
# native cancellation also ends a shielded wait: an awaited `run_in_threadpool` call
# stops waiting (its thread runs on, Python cannot interrupt it, and its pool slot is
# given back at once: a disconnect may briefly let one more thread run).
#
# The watcher is not started while the endpoint waits on ``receive`` for a body
# message straight from the server (it waits for a later turn): the relay did not
# exist when that read began. A body read notices a disconnect anyway
# (`ClientDisconnect`). Nor is it started for a task already being cancelled (a
# timeout). On trio everything is set up before the call: a cancel scope, a task group
# and the relay; there the disconnect also ends the endpoint's `run_in_threadpool`
# waits (`ClientLeaving`), and trio keeps the thread's pool slot until it returns.

_CLIENT_LEFT: Any = object()  # the endpoint's "result" once cancelled by a disconnect
_WATCH_AFTER = 0.001  # seconds between the watching timer's turns (asyncio)


class _Watching(dict["Request", "asyncio.Task[Any]"]):
    """The requests of one asyncio loop whose endpoint runs under cancel_on_disconnect,
    and the one timer that starts their watchers (one per loop, not one per request).

    A request is queued in the dict itself, the young requests, with its task (`serve`:
    a dict insert, and a delete when the endpoint returns). At each turn, every
    `_WATCH_AFTER` seconds while some request is queued, the requests queued before the
    previous turn (`old`: they have run for one to two turns) get a `_Watch`, and the
    young ones become `old`. A request waiting on ``receive`` for a body message waits
    for the next turn. The state is bound (`asgikit._tasks`) only while the timer is
    armed: a turn that leaves it disarmed unbinds it, and the next request arms it
    again on its way through `_watching_here`."""

    __slots__ = ("bound", "loop", "old", "thread", "timer", "watches")

    bound: asyncio.AbstractEventLoop | None  # (asgikit._tasks.LoopState)
    thread: int

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.old: dict[Request, asyncio.Task[Any]] = {}
        self.watches: dict[Request, _Watch] = {}
        self.timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.timer = self.loop.call_later(_WATCH_AFTER, self.turn)

    def turn(self) -> None:
        """Runs while every queued request's task is suspended (a loop callback)."""
        self.timer = None
        old, self.old = self.old, dict(self)
        self.clear()  # requests still hold this: their pop then finds nothing, see finish
        for request, task in old.items():
            if reading_body(request.scope):
                self[request] = task
                continue
            cancelling = getattr(task, "cancelling", None)  # Python 3.11+
            if cancelling is not None and cancelling():
                continue  # already being cancelled (a timeout): no second cancellation
            self.watches[request] = _Watch(request, task)
        if self or self.old:
            self.arm()
        else:  # nothing to watch: idle; the next request takes the slow way and arms
            self.bound = None

    def finish(self, request: Request, failed: bool) -> bool:
        """``request``'s endpoint ended after it left the young ones (watched, or put
        off): stop its watcher; whether the client left first (nothing is then sent).
        With ``failed`` (the endpoint raised), only if the error is our cancellation."""
        watch = self.watches.pop(request, None)
        if watch is None:  # put off to a later turn, or not watched
            self.pop(request, None)
            self.old.pop(request, None)
            return False
        watch.stop()
        if not watch.cancelled:
            return False
        # The endpoint swallowed the cancellation and returned: still send nothing.
        return watch.take_back_cancellation() or not failed


_WATCHING = PerLoop(_Watching)  # each loop's (see asgikit._tasks)
_here = _WATCHING.here  # (bound once: one attribute lookup less per request)


def _watching_here() -> tuple[_Watching, asyncio.Task[Any]] | tuple[Any, None]:
    """The slow way to this thread's loop's `_Watching` and the running task: the state
    is bound, and its timer armed, until a turn finds nothing to watch (so the hot path
    tests no timer). ``(NOWHERE, None)`` outside an asyncio task (trio)."""
    found = _WATCHING.bind()
    if found is None:
        return NOWHERE, None
    if found[0].timer is None:
        found[0].arm()
    return found


async def _call_in_cancel_scope(awaitable: Awaitable[Any], request: Request) -> Any:
    scope = request.scope
    relay = ReceiveRelay.of(scope, request.receive)
    result: Any = _CLIENT_LEFT
    with anyio.CancelScope() as cancel_scope:
        # The client leaving also ends the endpoint's `run_in_threadpool` waits, as a
        # native cancellation does on asyncio (their threads run on).
        leaving = ClientLeaving(cancel_scope)
        async with HelperTasks() as helpers:
            helpers.start_soon(_cancel_on_disconnect, relay, leaving.cancel, scope)
            token = client_leaving.set(leaving)
            try:
                result = await awaitable
            finally:
                leaving.endpoint_running = False
                client_leaving.reset(token)
    # Cancelled while shielded (a thread returning) or swallowed: still send nothing.
    return _CLIENT_LEFT if cancel_scope.cancel_called else result


async def _cancel_on_disconnect(
    relay: ReceiveRelay, cancel: Callable[[], object], scope: Scope
) -> None:
    try:
        await relay.watch()
    except Exception:  # a broken receive is the server's business, not a disconnect
        return
    else:
        cancel()
    finally:
        relay.leave(scope)  # (no reference cycle through the server's request object)


class _Watch:
    """One asyncio request's watcher task: cancels the request's task natively."""

    __slots__ = ("cancelled", "task", "watcher")

    def __init__(self, request: Request, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelled = False
        scope = request.scope
        relay = ReceiveRelay.of(scope, request.receive)
        self.watcher = task.get_loop().create_task(_cancel_on_disconnect(relay, self.cancel, scope))

    def cancel(self) -> None:
        self.cancelled = True
        self.task.cancel()

    def stop(self) -> None:
        self.watcher.cancel()
        # The cancelled watcher's traceback holds this watch (its `cancel`): without
        # the reference back, the task is freed when it ends, not by the collector.
        del self.watcher

    def take_back_cancellation(self) -> bool:
        """Undo our ``Task.cancel()``; False if another cancellation is pending too
        (a timeout, a shutdown), which must then go on."""
        uncancel = getattr(self.task, "uncancel", None)
        if uncancel is None:  # Python 3.10 counts no cancellations
            return True
        remaining: int = uncancel()
        return remaining == 0


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
