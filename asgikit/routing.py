"""The router: the ASGI application that dispatches to endpoints, mounts and websockets.

`Router` is itself an ASGI callable handling ``http``, ``websocket`` and ``lifespan``
scopes. Routes are kept in a segment tree (see `asgikit._matcher`), built as routes are
added; the middleware chain is built once, on first use.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import anyio

from asgikit._chain import Middleware, build_chain
from asgikit._concurrency import run_in_threadpool
from asgikit._errors import (
    ExceptionHandler,
    ExceptionHandlers,
    call_handler,
    default_error_response,
    server_error_response,
    to_response,
)
from asgikit._lifespan import Lifespan, serve_lifespan
from asgikit._matcher import SegmentTree, compile_template, route_path
from asgikit.background import is_async_callable
from asgikit.datastructures import redirect_location
from asgikit.exceptions import ClientDisconnect, HTTPException, NoMatchFound
from asgikit.requests import Request
from asgikit.responses import RedirectResponse, Response
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Mount", "Route", "Router", "WebSocketRoute"]

logger = logging.getLogger("asgikit")

Endpoint: TypeAlias = Callable[[Request], Any]
WebSocketEndpoint: TypeAlias = Callable[[Any], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def _endpoint_name(endpoint: Callable[..., Any]) -> str:
    return getattr(endpoint, "__name__", type(endpoint).__name__)


class Route:
    """An HTTP route: ``path`` template, ``endpoint(request)``, allowed ``methods``.

    ``methods`` defaults to ``["GET"]``; ``GET`` also answers ``HEAD``. ``name`` (for
    `url_path_for`) defaults to the endpoint's ``__name__``. ``middleware`` wraps this
    route only. A plain ``def`` endpoint runs in the thread pool.

    >>> Route("/users/{user_id:int}", get_user, name="user")
    """

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if not callable(endpoint):
            raise TypeError(f"route {path!r}: endpoint must be callable, not {endpoint!r}")
        self.path = path
        self.endpoint = endpoint
        self.name = _endpoint_name(endpoint) if name is None else name
        self.template = compile_template(path)
        allowed = [method.upper() for method in (methods or ["GET"])]
        for method in allowed:
            if method not in HTTP_METHODS:
                raise ValueError(f"route {path!r}: unknown HTTP method {method!r}")
        self.implicit_head = "GET" in allowed and "HEAD" not in allowed
        if self.implicit_head:
            allowed.append("HEAD")
        self.methods = tuple(allowed)
        self.middleware = tuple(middleware)
        self.is_async = is_async_callable(endpoint)
        self.app: ASGIApp | None = None  # set by the router when the route has middleware

    def __repr__(self) -> str:
        return f"Route(path={self.path!r}, name={self.name!r}, methods={list(self.methods)!r})"


class WebSocketRoute:
    """A WebSocket route: ``endpoint(websocket)`` is an ``async def``.

    >>> WebSocketRoute("/ws/generate", generate_ws)
    """

    def __init__(self, path: str, endpoint: WebSocketEndpoint, *, name: str | None = None) -> None:
        if not callable(endpoint):
            raise TypeError(f"route {path!r}: endpoint must be callable, not {endpoint!r}")
        self.path = path
        self.endpoint = endpoint
        self.name = _endpoint_name(endpoint) if name is None else name
        self.template = compile_template(path)

    def __repr__(self) -> str:
        return f"WebSocketRoute(path={self.path!r}, name={self.name!r})"


class Mount:
    """Serve another ASGI app (often a `Router`) below ``path``.

    The mounted app sees ``scope["root_path"]`` extended by the matched prefix and the
    full ``scope["path"]`` (ASGI spec), so it routes on the remainder. ``name`` prefixes
    the mounted router's route names in `url_path_for` (``"v2:user"``).

    >>> Mount("/api/v2", api_v2_router, name="v2")
    """

    def __init__(
        self,
        path: str,
        app: ASGIApp,
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if not callable(app):
            raise TypeError(f"mount {path!r}: app must be an ASGI callable, not {app!r}")
        self.path = path.rstrip("/")
        self.app = app
        self.name = name
        self.template = compile_template(path, prefix=True)
        self.middleware = tuple(middleware)
        self.handler: ASGIApp = build_chain(app, self.middleware) if self.middleware else app

    def url_path_for(self, name: str, /, **path_params: Any) -> str:
        """The path of route ``name`` inside the mounted app, with this mount's prefix."""
        own = {
            key: path_params.pop(key)
            for key in list(path_params)
            if key in self.template.param_names
        }
        if set(own) != self.template.param_names:
            raise NoMatchFound(name, path_params)
        try:
            prefix = self.template.format(own)
        except ValueError:
            raise NoMatchFound(name, path_params) from None
        if self.name is not None and name == self.name and set(path_params) <= {"path"}:
            return prefix + "/" + str(path_params.get("path", "")).lstrip("/")
        if self.name is None:
            remaining = name
        elif name.startswith(self.name + ":"):
            remaining = name[len(self.name) + 1 :]
        else:
            raise NoMatchFound(name, path_params)
        url_path_for = getattr(self.app, "url_path_for", None)
        if url_path_for is None:
            raise NoMatchFound(name, path_params)
        return prefix + str(url_path_for(remaining, **path_params))

    def __repr__(self) -> str:
        return f"Mount(path={self.path!r}, name={self.name!r}, app={self.app!r})"


class _Leaf(dict[str, "Route"]):
    """Everything registered on one path: HTTP routes by method (the dict itself, so
    ``dict.get`` is the ``accept`` of an HTTP lookup), and a WebSocket route."""

    __slots__ = ("websocket",)

    def __init__(self) -> None:
        super().__init__()
        self.websocket: WebSocketRoute | None = None

    # ``accept`` functions for SegmentTree.find:

    @staticmethod
    def any_http(leaf: _Leaf, _: None) -> _Leaf | None:
        return leaf if leaf else None

    @staticmethod
    def collect_methods(leaf: _Leaf, allowed: set[str]) -> None:
        allowed.update(leaf)

    @staticmethod
    def websocket_route(leaf: _Leaf, _: None) -> WebSocketRoute | None:
        return leaf.websocket


_http_route = _Leaf.get  # accept for HTTP lookups: the route for a method, or None


class _StartTracker:
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


def _strip_body(send: Send) -> Send:
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


class Router:
    """The application: routes, mounts, middleware, lifespan and error handling.

    An ordinary ASGI 3 callable (``uvicorn module:router`` serves it). Routes match by
    path segment in a tree; no path matches -> 404, path but not method -> 405 with
    ``Allow``; ``GET`` routes answer ``HEAD``. With ``redirect_slashes``, a path that only
    matches with (or without) a trailing ``/`` gets a 307 to that form.

    >>> router = Router()
    >>> @router.get("/hello")
    ... async def hello(request): return "Hello, world!"
    """

    def __init__(
        self,
        routes: Sequence[Route | Mount | WebSocketRoute] | None = None,
        *,
        middleware: Sequence[Middleware] = (),
        lifespan: Lifespan | None = None,
        exception_handlers: Mapping[int | type[BaseException], ExceptionHandler] | None = None,
        redirect_slashes: bool = True,
        debug: bool = False,
    ) -> None:
        self.routes: list[Route | Mount | WebSocketRoute] = []
        self.middleware = list(middleware)
        self.lifespan = lifespan
        self.redirect_slashes = redirect_slashes
        self.debug = debug
        self.lifespan_state: dict[str, Any] = {}
        self._handlers = ExceptionHandlers()
        for key, handler in (exception_handlers or {}).items():
            self.add_exception_handler(key, handler)
        self._tree: SegmentTree[_Leaf, Mount] = SegmentTree()
        self._static = self._tree.static
        self._names: dict[str, Route | WebSocketRoute] = {}
        self._app: ASGIApp | None = None
        for route in routes or ():
            self._add(route)

    # ------------------------------------------------------------------ registration

    def _add(self, route: Route | Mount | WebSocketRoute) -> None:
        if isinstance(route, Mount):
            self._tree.insert_mount(route.template, route)
        elif isinstance(route, Route):
            leaf = self._tree.insert(route.template, _Leaf)
            for method in route.methods:
                existing = leaf.get(method)
                # First come, first served; but a route declared for HEAD replaces the
                # HEAD that a GET route answers implicitly.
                if existing is None or (
                    method == "HEAD" and existing.implicit_head and not route.implicit_head
                ):
                    leaf[method] = route
            if route.middleware:
                route.app = build_chain(functools.partial(self._run_route, route), route.middleware)
            self._names.setdefault(route.name, route)
        elif isinstance(route, WebSocketRoute):
            leaf = self._tree.insert(route.template, _Leaf)
            if leaf.websocket is None:
                leaf.websocket = route
            self._names.setdefault(route.name, route)
        else:
            raise TypeError(f"expected Route, Mount or WebSocketRoute, not {route!r}")
        self.routes.append(route)

    def add_route(
        self,
        path: str,
        endpoint: Endpoint,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        """Register ``endpoint`` for ``path`` and ``methods`` (default ``["GET"]``)."""
        self._add(Route(path, endpoint, methods=methods, name=name, middleware=middleware))

    def add_websocket_route(
        self, path: str, endpoint: WebSocketEndpoint, name: str | None = None
    ) -> None:
        """Register a WebSocket ``endpoint(websocket)`` for ``path``."""
        self._add(WebSocketRoute(path, endpoint, name=name))

    def mount(
        self,
        path: str,
        app: ASGIApp,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        """Serve ``app`` (a `Router` or any ASGI app) below ``path``."""
        self._add(Mount(path, app, name=name, middleware=middleware))

    def route(
        self,
        path: str,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> Callable[[F], F]:
        """Decorator form of `add_route`."""

        def decorator(endpoint: F) -> F:
            self.add_route(path, endpoint, methods=methods, name=name, middleware=middleware)
            return endpoint

        return decorator

    def _method_decorator(
        self, method: str, path: str, name: str | None, middleware: Sequence[Middleware]
    ) -> Callable[[F], F]:
        return self.route(path, methods=[method], name=name, middleware=middleware)

    def get(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``GET`` (and ``HEAD``) endpoint."""
        return self._method_decorator("GET", path, name, middleware)

    def post(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``POST`` endpoint."""
        return self._method_decorator("POST", path, name, middleware)

    def put(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``PUT`` endpoint."""
        return self._method_decorator("PUT", path, name, middleware)

    def patch(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``PATCH`` endpoint."""
        return self._method_decorator("PATCH", path, name, middleware)

    def delete(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``DELETE`` endpoint."""
        return self._method_decorator("DELETE", path, name, middleware)

    def head(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register a ``HEAD`` endpoint."""
        return self._method_decorator("HEAD", path, name, middleware)

    def options(
        self, path: str, *, name: str | None = None, middleware: Sequence[Middleware] = ()
    ) -> Callable[[F], F]:
        """Register an ``OPTIONS`` endpoint."""
        return self._method_decorator("OPTIONS", path, name, middleware)

    def websocket(self, path: str, *, name: str | None = None) -> Callable[[F], F]:
        """Decorator form of `add_websocket_route`."""

        def decorator(endpoint: F) -> F:
            self.add_websocket_route(path, endpoint, name=name)
            return endpoint

        return decorator

    def add_exception_handler(
        self, key: int | type[BaseException], handler: ExceptionHandler
    ) -> None:
        """Answer errors with ``handler(request, exc)``: ``key`` is a status code (for
        `HTTPException`) or an exception class (the most specific class wins)."""
        self._handlers.add(key, handler)

    # ------------------------------------------------------------------ URL reversal

    def url_path_for(self, name: str, /, **path_params: Any) -> str:
        """The path of the route called ``name`` with ``path_params`` filled in.

        Names inside a named mount are ``"mount:route"``. Raises `NoMatchFound` for an
        unknown name or parameters that do not fit the route's template.
        """
        route = self._names.get(name)
        if route is not None:
            try:
                return route.template.format(path_params)
            except ValueError:
                pass
        for mount in self.routes:
            if isinstance(mount, Mount):
                try:
                    return mount.url_path_for(name, **path_params)
                except NoMatchFound:
                    continue
        raise NoMatchFound(name, path_params)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "router" not in scope:
            scope["router"] = self  # the top router: request.url_for() resolves names here
        if self.middleware:
            app = self._app
            if app is None:
                app = self._build_app()
            await app(scope, receive, send)
            return
        # The hot path, inlined (no coroutine frames between the server and the
        # endpoint): an HTTP route without route middleware, outside any mount.
        # `_dispatch` and `_run_route` are the general form of the same steps.
        if scope["type"] == "http" and not scope.get("root_path"):
            method: str = scope["method"]
            path: str = scope["path"]
            route: Route | None = None
            leaf = self._static.get(path)
            if leaf is not None:
                route = leaf.get(method)
            elif method != "HEAD":
                found = self._tree.find(path, _http_route, method)
                if found is not None and found[0].__class__ is Route:
                    route = found[0]
                    if found[1]:
                        scope["path_params"] = found[1]
            if route is not None and route.app is None and method != "HEAD":
                # Request(scope, receive) without re-checking the scope type.
                request = _new_object(Request)
                request.scope = scope
                request.receive = receive
                try:
                    if route.is_async:
                        result = await route.endpoint(request)
                    else:
                        result = await run_in_threadpool(route.endpoint, request)
                except Exception as exc:
                    await self._respond(request, None, exc, send)
                    return
                except BaseException:  # cancelled (timeout, shutdown): still release it
                    await _release(request)
                    raise
                if result.__class__.__call__ is _PLAIN_CALL and request._form is None:
                    try:
                        await result(scope, receive, send)
                    except Exception as exc:
                        self._after_start(exc)
                        raise
                    return
                await self._respond(request, result, None, send)
                return
        await self._dispatch(scope, receive, send)

    def _build_app(self) -> ASGIApp:
        """The middleware chain around the dispatcher, built once, on first use."""
        app = self._guard(build_chain(self._dispatch, self.middleware))
        self._app = app
        return app

    def _guard(self, app: ASGIApp) -> ASGIApp:
        """Outermost layer when there is middleware: errors the middleware itself raises
        before any response started are answered like an endpoint's."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await self._call_guarded(app, scope, receive, send)

        return guarded

    async def _call_guarded(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Call ``app`` (middleware, a mounted app) for an HTTP request. An error it raises
        before any response started is answered like an endpoint's: exception handlers,
        else a 500 (logged, then re-raised to the server)."""
        tracker = _StartTracker(send)
        try:
            await app(scope, receive, tracker)
        except ClientDisconnect:
            return
        except Exception as exc:
            if tracker.started:  # an inner layer answered (through this send) or it was cut
                raise
            response, unhandled = await self._error_response(Request(scope, receive), exc)
            with contextlib.suppress(OSError):
                await response(scope, receive, tracker)
            if unhandled is None:
                return
            if unhandled is exc:
                raise
            raise unhandled from exc

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "http":
            path: str = scope["path"]
            root_path = scope.get("root_path")
            if root_path:
                path = route_path(path, root_path)
            method: str = scope["method"]
            if method == "HEAD":
                send = _strip_body(send)
            leaf = self._static.get(path)
            if leaf is not None:
                route = leaf.get(method)
                if route is not None:
                    if route.app is None:
                        await self._run_route(route, scope, receive, send)
                    else:
                        await self._call_guarded(route.app, scope, receive, send)
                    return
            await self._dispatch_http(path, method, scope, receive, send)
        elif scope_type == "websocket":
            await self._dispatch_websocket(scope, receive, send)
        elif scope_type == "lifespan":
            await self._run_lifespan(scope, receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {scope_type!r}")

    async def _dispatch_http(
        self, path: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        found = self._tree.find(path, _http_route, method)
        if found is None:
            await self._no_route(path, method, scope, receive, send)
            return
        target, params, consumed = found
        if isinstance(target, Route):
            if params:
                outer = scope.get("path_params")
                scope["path_params"] = {**outer, **params} if outer else params
            if target.app is None:
                await self._run_route(target, scope, receive, send)
            else:
                await self._call_guarded(target.app, scope, receive, send)
            return
        # a mount
        assert isinstance(target, Mount)
        await self._run_mount(target, params, path[:consumed], scope, receive, send)

    async def _run_mount(
        self,
        mount: Mount,
        params: dict[str, Any],
        prefix: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        child = dict(scope)
        root_path = scope.get("root_path", "")
        child.setdefault("app_root_path", root_path)  # where the top router is served
        child["root_path"] = root_path + prefix
        # Mounted routers fall back on the handlers of the routers they are mounted in.
        child["asgikit.routers"] = (self, *scope.get("asgikit.routers", ()))
        if params:
            child["path_params"] = {**scope.get("path_params", {}), **params}
        if scope["type"] != "http":
            await mount.handler(child, receive, send)
            return
        await self._call_guarded(mount.handler, child, receive, send)

    async def _no_route(
        self, path: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        allowed: set[str] = set()
        self._tree.find(path, _Leaf.collect_methods, allowed)
        if allowed:
            allow = ", ".join(sorted(allowed))
            exc = HTTPException(405, headers={"Allow": allow})
        else:
            if self.redirect_slashes and path != "/" and path:
                other = path[:-1] if path.endswith("/") else path + "/"
                if self._tree.find(other, _Leaf.any_http, None) is not None:
                    full: str = scope["path"]
                    location = redirect_location(scope, full[: len(full) - len(path)] + other)
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
            exc = HTTPException(404)
        response, _ = await self._error_response(Request(scope, receive), exc)
        await response(scope, receive, send)

    async def _run_route(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            if route.is_async:
                result = await route.endpoint(request)
            else:
                result = await run_in_threadpool(route.endpoint, request)
        except Exception as exc:
            await self._respond(request, None, exc, send)
            return
        except BaseException:  # cancelled (timeout, shutdown): still release it
            await _release(request)
            raise
        await self._respond(request, result, None, send)

    async def _respond(
        self, request: Request, result: Any, error: Exception | None, send: Send
    ) -> None:
        """Send the endpoint's ``result`` (or the answer to its ``error``), then release
        the request. Unhandled errors are re-raised once answered."""
        scope, receive = request.scope, request.receive
        unhandled: Exception | None = None
        try:
            if error is not None:
                if isinstance(error, ClientDisconnect):
                    return
                response, unhandled = await self._error_response(request, error)
            else:
                try:
                    response = result if isinstance(result, Response) else to_response(result)
                except Exception as exc:
                    response, unhandled = await self._error_response(request, exc)
            if type(response).__call__ is _PLAIN_CALL:
                # A complete body: anything raised from here on (send failing, a
                # background task) happens after the response started.
                try:
                    await response(scope, receive, send)
                except Exception as exc:
                    self._after_start(exc)
                    raise
            else:
                tracker = _StartTracker(send)
                try:
                    await response(scope, receive, tracker)
                except ClientDisconnect:
                    return
                except Exception as exc:
                    if isinstance(exc, OSError) and tracker.started:
                        raise  # the server's send failed: the client has gone
                    self._log(exc)
                    if not tracker.started:
                        with contextlib.suppress(OSError):
                            await server_error_response(exc, self.debug)(scope, receive, tracker)
                    raise
            if unhandled is not None:
                raise unhandled
        finally:
            await _release(request)

    def _after_start(self, exc: Exception) -> None:
        """Note an error raised once the response had started (no second start)."""
        if not isinstance(exc, OSError):
            self._log(exc)

    async def _error_response(
        self, request: Request, exc: Exception
    ) -> tuple[Any, Exception | None]:
        """The response for ``exc`` raised by an endpoint, and the exception to re-raise
        once it is sent (unhandled errors: the server must hear about them).

        Handlers are looked up in this router, then in the routers it is mounted in
        (nearest first); within one router the most specific class wins.
        """
        routers: tuple[Router, ...] = (self, *request.scope.get("asgikit.routers", ()))
        handler: ExceptionHandler | None
        if isinstance(exc, HTTPException):
            for router in routers:
                handler = router._handlers.for_http(exc)
                if handler is not None:
                    return await self._handled(handler, request, exc, None, routers)
            return default_error_response(exc), None
        for router in routers:
            handler = router._handlers.for_class(exc)
            if handler is not None:
                return await self._handled(handler, request, exc, None, routers)
        # Unhandled: log, answer 500 (a 500 or Exception handler may shape it), re-raise.
        self._log(exc)
        for router in routers:
            handler = router._handlers.for_unhandled()
            if handler is not None:
                return await self._handled(handler, request, exc, exc, routers)
        return server_error_response(exc, _debug(routers)), exc

    async def _handled(
        self,
        handler: ExceptionHandler,
        request: Request,
        exc: Exception,
        reraise: Exception | None,
        routers: tuple[Router, ...],
    ) -> tuple[Any, Exception | None]:
        try:
            return await call_handler(handler, request, exc), reraise
        except Exception as handler_exc:
            self._log(handler_exc)
            return server_error_response(handler_exc, _debug(routers)), handler_exc

    def _log(self, exc: BaseException) -> None:
        logger.error("Exception in ASGI application", exc_info=exc)

    # ------------------------------------------------------------------ websocket

    async def _dispatch_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root_path = scope.get("root_path")
        if root_path:
            path = route_path(path, root_path)
        found = self._tree.find(path, _Leaf.websocket_route, None)
        if found is None:
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        target, params, consumed = found
        if isinstance(target, Mount):
            await self._run_mount(target, params, path[:consumed], scope, receive, send)
            return
        assert isinstance(target, WebSocketRoute)
        if params:
            outer = scope.get("path_params")
            scope["path_params"] = {**outer, **params} if outer else params
        elif "path_params" not in scope:
            scope["path_params"] = {}
        from asgikit.websockets import WebSocket, close_after_error

        websocket = WebSocket(scope, receive, send)
        try:
            await target.endpoint(websocket)
        except Exception as exc:
            from asgikit.websockets import WebSocketDisconnect

            if isinstance(exc, WebSocketDisconnect):
                return
            self._log(exc)
            await close_after_error(websocket)
            raise

    # ------------------------------------------------------------------ lifespan

    def _lifespans(self) -> list[tuple[Lifespan, Router]]:
        """This router's lifespan, then each mounted router's, depth first."""
        found: list[tuple[Lifespan, Router]] = []
        if self.lifespan is not None:
            found.append((self.lifespan, self))
        for route in self.routes:
            if isinstance(route, Mount) and isinstance(route.app, Router):
                found.extend(route.app._lifespans())
        return found

    async def _run_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        def publish(state: dict[str, Any]) -> None:
            self.lifespan_state = state  # for servers without the lifespan state extension

        await serve_lifespan(self._lifespans(), scope, receive, send, publish)


async def _release(request: Request) -> None:
    """Close what the request holds (uploaded files), even inside a cancelled scope."""
    if request._form is not None:
        with anyio.CancelScope(shield=True):
            await request.close()


def _debug(routers: tuple[Router, ...]) -> bool:
    """Whether any router handling the request is in debug mode."""
    return any(router.debug for router in routers)
