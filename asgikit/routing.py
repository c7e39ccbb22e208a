"""The router: registration, URL reversal, and the switch on the ASGI scope type.

`Router` is itself an ASGI callable handling ``http``, ``websocket`` and ``lifespan``
scopes. Routes are kept in a segment tree (see `asgikit._matcher`), built as routes are
added; the middleware chain is built once, on first use. Running a matched HTTP route
(calling the endpoint, converting its result, errors, HEAD, release) is
`asgikit._dispatch`'s job; which response an error becomes is `asgikit._errors`'.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, Protocol, TypeAlias, TypeVar, cast

from typing_extensions import ParamSpec

from asgikit._chain import Middleware, build_chain
from asgikit._concurrency import run_in_threadpool
from asgikit._dispatch import (
    PAST_MIDDLEWARE,
    SERVER_SCOPE,
    Runnable,
    ServerScope,
    call_guarded,
    note_in_server_scope,
    run_head,
    serve,
    without_body,
)
from asgikit._errors import ExceptionHandler, ExceptionHandlers, error_response, log_error
from asgikit._inspect import is_async_callable
from asgikit._lifespan import Lifespan, serve_lifespan, warn_lifespan_not_run
from asgikit._matched import MatchedRoute, path_format
from asgikit._matcher import SegmentTree, compile_template, route_path
from asgikit.datastructures import redirect_location
from asgikit.exceptions import HTTPException, NoMatchFound
from asgikit.requests import Request
from asgikit.responses import RedirectResponse
from asgikit.types import ASGIApp, Receive, Scope, Send

__all__ = ["MatchedRoute", "Mount", "Route", "Router", "WebSocketRoute"]

logger = logging.getLogger("asgikit")

Endpoint: TypeAlias = Callable[[Request], Any]
WebSocketEndpoint: TypeAlias = Callable[[Any], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
RouterT = TypeVar("RouterT")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

# Keys a Router puts in the scope it hands a mounted app.
_ROUTERS = "asgikit.routers"  # the routers it is mounted in, nearest first (error handlers)
_MOUNTS = "asgikit.mounts"  # the mounts it was reached through, outermost first (identity)
_OUTER_SCOPE = "asgikit.outer_scope"  # the scope the mounting router was called with


def _endpoint_name(endpoint: Callable[..., Any]) -> str:
    return getattr(endpoint, "__name__", type(endpoint).__name__)


class _Identified:
    """A route's `MatchedRoute`, built at registration, and its forms under mounts."""

    identity: MatchedRoute
    _identities: dict[tuple[Mount, ...], MatchedRoute]

    def identity_under(self, mounts: tuple[Mount, ...]) -> MatchedRoute:
        """The identity seen through ``mounts`` (outermost first); built once per chain."""
        identity = self._identities.get(mounts)
        if identity is None:
            identity = self.identity
            for mount in reversed(mounts):
                identity = identity.under(mount.path_format, mount.name)
            self._identities[mounts] = identity
        return identity


class Route(_Identified):
    """An HTTP route: ``path`` template, ``endpoint(request)``, allowed ``methods``.

    ``methods`` defaults to ``["GET"]``; ``GET`` also answers ``HEAD``. ``name`` (for
    `url_path_for`) defaults to the endpoint's ``__name__``. ``middleware`` wraps this
    route only. A plain ``def`` endpoint runs in the thread pool.
    ``cancel_on_disconnect`` (``None``: the router's setting) cancels the endpoint when
    the client disconnects before the response has started.

    >>> Route("/users/{user_id:int}", get_user, name="user")
    Route(path='/users/{user_id:int}', name='user', methods=['GET', 'HEAD'])
    """

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        cancel_on_disconnect: bool | None = None,
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
        self.cancel_on_disconnect = cancel_on_disconnect
        self.is_async = is_async_callable(endpoint)
        self._settle(False)
        self.app: ASGIApp | None = None  # set by the router when the route has middleware
        self.identity = MatchedRoute(path_format(path), self.name, self.methods)
        self._identities = {}

    def _settle(self, router_setting: bool) -> None:
        """Resolve ``cancel_on_disconnect`` (None: the router's setting, read when the
        route is added) into what the dispatcher reads per request."""
        setting = self.cancel_on_disconnect
        self.watch_disconnect = router_setting if setting is None else bool(setting)
        # The endpoint as a call returning an awaitable: an async endpoint as it is, a
        # plain def sent to the thread pool (so the dispatcher makes no test for it).
        run: Any = self.endpoint
        if not self.is_async:
            run = functools.partial(cast(Any, run_in_threadpool), self.endpoint)
        self.run: Callable[[Request], Awaitable[Any]] = run

    def __repr__(self) -> str:
        return f"Route(path={self.path!r}, name={self.name!r}, methods={list(self.methods)!r})"


class WebSocketRoute(_Identified):
    """A WebSocket route: ``endpoint(websocket)`` is an ``async def``.

    >>> WebSocketRoute("/ws/generate", generate_ws)
    WebSocketRoute(path='/ws/generate', name='generate_ws')
    """

    def __init__(self, path: str, endpoint: WebSocketEndpoint, *, name: str | None = None) -> None:
        if not callable(endpoint):
            raise TypeError(f"route {path!r}: endpoint must be callable, not {endpoint!r}")
        self.path = path
        self.endpoint = endpoint
        self.name = _endpoint_name(endpoint) if name is None else name
        self.template = compile_template(path)
        self.identity = MatchedRoute(path_format(path), self.name, None)
        self._identities = {}

    def __repr__(self) -> str:
        return f"WebSocketRoute(path={self.path!r}, name={self.name!r})"


class Mount:
    """Serve another ASGI app (often a `Router`) below ``path``.

    The mounted app sees ``scope["root_path"]`` extended by the matched prefix and the
    full ``scope["path"]`` (ASGI spec), so it routes on the remainder. ``name`` prefixes
    the mounted router's route names in `url_path_for` (``"v2:user"``) and in
    ``request.route.name``.

    >>> Mount("/api/v2", api_v2_router, name="v2")
    Mount(path='/api/v2', name='v2', app=<asgikit.routing.Router object at ...>)
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
        self.path_format = path_format(self.path)
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


class _Leaf(dict[str, "Route | _Head"]):
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


class _Matched(Runnable, Protocol):
    """What `Router._resolve` finds in a leaf: a `Route`, or its `_Head`."""

    @property
    def identity(self) -> MatchedRoute: ...

    def identity_under(self, mounts: tuple[Mount, ...]) -> MatchedRoute: ...


_NO_LEAF = _Leaf()  # what a path without static routes has (always empty)

# accept for HTTP lookups: the route for a method, or None
_http_route: Callable[[_Leaf, str], _Matched | None] = _Leaf.get


def _answer(app: ASGIApp, method: str) -> _Answer:
    # (HEAD: the body of a 404, 405, redirect or mounted app's answer is dropped too)
    return _Answer(without_body(app) if method == "HEAD" else app)


class _Answer:
    """What `Router._resolve` returns when no route of this router runs: the ASGI app
    that answers instead (a mount entered, a 404, 405 or redirect sent, a WebSocket or
    lifespan scope served)."""

    __slots__ = ("app",)

    # (`Runnable`'s other attributes: never read, `app` is always set)
    run: Callable[[Request], Awaitable[Any]]
    watch_disconnect = False

    def __init__(self, app: ASGIApp) -> None:
        self.app: ASGIApp | None = app


class _Head(_Answer):
    """A route as it answers ``HEAD``: run as for ``GET``, with a ``send`` that drops
    the body (`asgikit._dispatch.run_head`). Made when the route is added, so a ``GET``
    pays nothing for ``HEAD`` (no method test per request)."""

    __slots__ = ("route",)

    def __init__(self, route: Route, app: ASGIApp) -> None:
        super().__init__(app)
        self.route = route

    @property
    def implicit_head(self) -> bool:
        return self.route.implicit_head

    @property
    def identity(self) -> MatchedRoute:
        return self.route.identity

    def identity_under(self, mounts: tuple[Mount, ...]) -> MatchedRoute:
        return self.route.identity_under(mounts)


def _for_method(
    register: Callable[Concatenate[RouterT, str, P], R], method: str, doc: str
) -> Callable[Concatenate[RouterT, P], R]:
    """``register`` with its HTTP method fixed: one definition for `Router.get` & co."""

    def decorator(self: RouterT, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return register(self, method, *args, **kwargs)

    decorator.__name__ = method.lower()
    decorator.__qualname__ = f"Router.{method.lower()}"
    decorator.__doc__ = doc
    # What help() and runtime introspection show: register's parameters, minus method.
    signature = inspect.signature(register)
    parameters = list(signature.parameters.values())
    del parameters[1]
    decorator.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return decorator


def _note_route(scope: Scope, route: _Matched | WebSocketRoute | None) -> None:
    """Store the route's identity (``None``: no route matched) in ``scope`` and every
    scope enclosing it: those of the routers it is mounted in, and the scopes the
    server passed to routers with middleware (`asgikit._dispatch.ServerScope`)."""
    mounts: tuple[Mount, ...] | None = scope.get(_MOUNTS)
    if route is None:
        identity = None
    else:
        identity = route.identity if mounts is None else route.identity_under(mounts)
    outer: Scope | None = scope
    while outer is not None:
        outer["route"] = identity
        note_in_server_scope(outer)
        outer = outer.get(_OUTER_SCOPE)


class Router:
    """The application: routes, mounts, middleware, lifespan and error handling.

    An ordinary ASGI 3 callable (``uvicorn module:router`` serves it). Routes match by
    path segment in a tree; no path matches -> 404, path but not method -> 405 with
    ``Allow``; ``GET`` routes answer ``HEAD``. With ``redirect_slashes``, a path that only
    matches with (or without) a trailing ``/`` gets a 307 to that form. With
    ``cancel_on_disconnect``, an endpoint still working when its client disconnects
    (before the response started) is cancelled; routes may override it (the router's
    setting is read when a route is registered).

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
        cancel_on_disconnect: bool = False,
    ) -> None:
        self.routes: list[Route | Mount | WebSocketRoute] = []
        self.middleware = list(middleware)
        self.lifespan = lifespan
        self.redirect_slashes = redirect_slashes
        self.debug = debug
        self.cancel_on_disconnect = cancel_on_disconnect
        self.lifespan_state: dict[str, Any] = {}
        self._lifespan_ran = False  # set when this router served a lifespan startup
        self._first_request_pending = True
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
            route._settle(self.cancel_on_disconnect)
            if route.middleware:
                # Guarded like the router's own middleware; the chain ends in running
                # the route (`serve` with the route already matched).
                chain = build_chain(functools.partial(serve, self, _route=route), route.middleware)
                route.app = functools.partial(call_guarded, chain, self)
            for method in route.methods:
                existing = leaf.get(method)
                if method != "HEAD":
                    if existing is None:  # first come, first served
                        leaf[method] = route
                # A route declared for HEAD replaces the HEAD a GET route answers.
                elif existing is None or (existing.implicit_head and not route.implicit_head):
                    leaf[method] = _Head(route, run_head(self, route))
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
        cancel_on_disconnect: bool | None = None,
    ) -> None:
        """Register ``endpoint`` for ``path`` and ``methods`` (default ``["GET"]``)."""
        route = Route(
            path,
            endpoint,
            methods=methods,
            name=name,
            middleware=middleware,
            cancel_on_disconnect=cancel_on_disconnect,
        )
        self._add(route)

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
        cancel_on_disconnect: bool | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of `add_route`."""

        def decorator(endpoint: F) -> F:
            self.add_route(
                path,
                endpoint,
                methods=methods,
                name=name,
                middleware=middleware,
                cancel_on_disconnect=cancel_on_disconnect,
            )
            return endpoint

        return decorator

    def _route_for_method(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        cancel_on_disconnect: bool | None = None,
    ) -> Callable[[F], F]:
        # The one definition behind get/post/put/patch/delete/head/options.
        return self.route(
            path,
            methods=[method],
            name=name,
            middleware=middleware,
            cancel_on_disconnect=cancel_on_disconnect,
        )

    get = _for_method(_route_for_method, "GET", "Register a ``GET`` (and ``HEAD``) endpoint.")
    post = _for_method(_route_for_method, "POST", "Register a ``POST`` endpoint.")
    put = _for_method(_route_for_method, "PUT", "Register a ``PUT`` endpoint.")
    patch = _for_method(_route_for_method, "PATCH", "Register a ``PATCH`` endpoint.")
    delete = _for_method(_route_for_method, "DELETE", "Register a ``DELETE`` endpoint.")
    head = _for_method(_route_for_method, "HEAD", "Register a ``HEAD`` endpoint.")
    options = _for_method(_route_for_method, "OPTIONS", "Register an ``OPTIONS`` endpoint.")

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

    # The ASGI callable: `asgikit._dispatch.serve`, which asks `_resolve` what answers
    # the scope and runs a matched route itself, in one coroutine frame.
    __call__ = serve

    def _resolve(self, scope: Scope) -> Runnable:
        """What answers ``scope``: the switch on the scope type, then, for HTTP, the
        route the request runs (its path parameters and identity stored in ``scope``),
        or the app that answers instead: a mount, a 404, a 405 or a redirect. WebSocket
        and lifespan scopes are the router's own to serve (``app`` set)."""
        scope_type = scope["type"]
        if scope_type != "http":
            if scope_type == "websocket":
                return _Answer(self._dispatch_websocket)
            if scope_type == "lifespan":
                return _Answer(self._run_lifespan)
            raise ValueError(f"unsupported ASGI scope type {scope_type!r}")
        path: str = scope["path"]
        root_path = scope.get("root_path")
        if root_path:
            path = route_path(path, root_path)
        method: str = scope["method"]
        route: _Matched | None = self._static.get(path, _NO_LEAF).get(method)
        if route is None:
            found = self._tree.find(path, _http_route, method)
            if found is None:
                _note_route(scope, None)
                return _answer(functools.partial(self._no_route, path, method), method)
            target, params, consumed = found
            if isinstance(target, Mount):
                prefix = path[:consumed]
                return _answer(functools.partial(self._run_mount, target, params, prefix), method)
            route = target
            if _MOUNTS not in scope:  # the common case, inlined: the top router
                if params:
                    scope["path_params"] = params
                scope["route"] = route.identity
                return route
            if params:  # keep the mount's own parameters
                scope["path_params"] = {**scope.get("path_params", {}), **params}
        if _MOUNTS in scope:
            _note_route(scope, route)
        else:  # the common case, inlined: the top router
            scope["route"] = route.identity
        return route

    async def _enter_middleware(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            app = self._build_app()
        await app(scope, receive, send)  # the chain ends in this router again

    def _build_app(self) -> ASGIApp:
        """The middleware chain, built once, on first use, around the router itself:
        `_guard` marks the scope, so the innermost call dispatches instead of entering
        the chain again. Errors it raises before a response started are answered like
        an endpoint's."""
        app = self._guard(build_chain(self, self.middleware))
        self._app = app
        return app

    def _guard(self, app: ASGIApp) -> ASGIApp:
        """Outermost layer when there is middleware: errors the middleware itself raises
        before any response started are answered like an endpoint's."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            # When the chain calls the router back, dispatch (the middleware ran).
            scope[PAST_MIDDLEWARE] = self
            # The route is noted here even if the chain calls back with a copy.
            server_scope = scope[SERVER_SCOPE] = ServerScope(scope)
            try:
                if scope["type"] != "http":
                    await app(scope, receive, send)
                    return
                await call_guarded(app, self, scope, receive, send)
            finally:
                server_scope.scope = None  # (no cycle: the scope holds it)

        return guarded

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
        # Mounted routers fall back on the handlers of the routers they are mounted in,
        # name their routes as seen from the top, and report the match outwards.
        child[_ROUTERS] = (self, *scope.get(_ROUTERS, ()))
        child[_MOUNTS] = (*scope.get(_MOUNTS, ()), mount)
        child[_OUTER_SCOPE] = scope
        if params:
            child["path_params"] = {**scope.get("path_params", {}), **params}
        if scope["type"] != "http":
            await mount.handler(child, receive, send)
            return
        await call_guarded(mount.handler, self, child, receive, send)

    async def _no_route(
        self, path: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        allowed: set[str] = set()
        self._tree.find(path, _Leaf.collect_methods, allowed)
        if allowed:
            allow = ", ".join(sorted(allowed))
            exc = HTTPException(405, headers={"Allow": allow})
        else:
            # "" is the root of a server-side route prefix (path == root_path): like a
            # mount's prefix, it redirects to the prefix with a slash.
            if self.redirect_slashes and path != "/":
                other = path[:-1] if path.endswith("/") else path + "/"
                if self._tree.find(other, _Leaf.any_http, None) is not None:
                    full: str = scope["path"]
                    location = redirect_location(scope, full[: len(full) - len(path)] + other)
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
            exc = HTTPException(404)
        routers = (self, *scope.get(_ROUTERS, ()))
        response, _ = await error_response(Request(scope, receive), exc, routers)
        await response(scope, receive, send)

    # ------------------------------------------------------------------ websocket

    async def _dispatch_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root_path = scope.get("root_path")
        if root_path:
            path = route_path(path, root_path)
        found = self._tree.find(path, _Leaf.websocket_route, None)
        if found is None:
            _note_route(scope, None)
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
        _note_route(scope, target)
        from asgikit.websockets import WebSocket, close_after_error

        websocket = WebSocket(scope, receive, send)
        try:
            await target.endpoint(websocket)
        except Exception as exc:
            from asgikit.websockets import WebSocketDisconnect

            if isinstance(exc, WebSocketDisconnect):
                return
            log_error(exc)
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

    def _lifespan_missing(self) -> bool:
        """True when this router has lifespans to run and no lifespan startup ran."""
        return not self._lifespan_ran and bool(self._lifespans())

    def _first_request(self) -> None:
        """Checked once, on the first request: warn if a lifespan should have run."""
        self._first_request_pending = False
        if self._lifespan_missing():
            warn_lifespan_not_run()

    async def _run_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        def publish(state: dict[str, Any]) -> None:
            self.lifespan_state = state  # for servers without the lifespan state extension
            self._lifespan_ran = True

        await serve_lifespan(self._lifespans(), scope, receive, send, publish)
