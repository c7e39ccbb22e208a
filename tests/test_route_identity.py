"""Route identity: request.route and scope["route"] name the matched route as seen from
the app the server called (mount prefixes and names included, converters removed)."""

from __future__ import annotations

from typing import Any

import pytest

from asgikit import HTTPException, JSONResponse, Middleware, Mount, Request, Router
from asgikit.routing import MatchedRoute
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Receive, Scope, Send
from asgikit.websockets import WebSocket


async def describe(request: Request) -> dict[str, Any]:
    route = request.route
    assert route is not None
    assert request.scope["route"] is route
    return {
        "path_format": route.path_format,
        "name": route.name,
        "methods": list(route.methods or ()),
        "id": id(route),
    }


def users_router() -> Router:
    router = Router()
    router.add_route("/users/{user_id:int}", describe, name="user")
    return router


class SeesRoute:
    """Outermost wrapper: what scope["route"] holds once the app returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[MatchedRoute | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] != "lifespan":
            self.seen.append(scope.get("route"))


def test_top_level_route() -> None:
    client = TestClient(users_router())
    first = client.get("/users/7").json()
    assert first["path_format"] == "/users/{user_id}"
    assert first["name"] == "user"
    assert first["methods"] == ["GET", "HEAD"]
    # Built once at registration: every request sees the same object.
    assert client.get("/users/8").json()["id"] == first["id"]


def test_mounted_route_has_full_template_and_name() -> None:
    app = Router([Mount("/api/v2", users_router(), name="v2")])
    answer = TestClient(app).get("/api/v2/users/7").json()
    assert answer["path_format"] == "/api/v2/users/{user_id}"
    assert answer["name"] == "v2:user"
    assert app.url_path_for(answer["name"], user_id=7) == "/api/v2/users/7"


def test_unnamed_mount_keeps_the_inner_name() -> None:
    app = Router([Mount("/api", users_router())])
    answer = TestClient(app).get("/api/users/1").json()
    assert (answer["path_format"], answer["name"]) == ("/api/users/{user_id}", "user")


def test_nested_mounts_with_parameters() -> None:
    inner = users_router()
    app = Router([Mount("/org/{org:int}", Router([Mount("/v2", inner, name="v2")]), name="org")])
    client = TestClient(app)
    answer = client.get("/org/3/v2/users/7").json()
    assert answer["path_format"] == "/org/{org}/v2/users/{user_id}"
    assert answer["name"] == "org:v2:user"
    assert client.get("/org/4/v2/users/8").json()["id"] == answer["id"]
    assert app.url_path_for("org:v2:user", org=3, user_id=7) == "/org/3/v2/users/7"
    # The same router mounted elsewhere names its route from there.
    other = Router([Mount("/direct", inner, name="d")])
    assert TestClient(other).get("/direct/users/7").json()["name"] == "d:user"


def test_outermost_wrapper_sees_the_route_in_the_servers_scope() -> None:
    wrapper = SeesRoute(Router([Mount("/api/v2", users_router(), name="v2")]))
    client = TestClient(wrapper)
    assert client.get("/api/v2/users/7").status_code == 200
    assert client.get("/api/v2/nowhere").status_code == 404
    assert client.get("/nowhere").status_code == 404
    found, inner_missing, missing = wrapper.seen
    assert found is not None and found.path_format == "/api/v2/users/{user_id}"
    assert inner_missing is None
    assert missing is None


def test_router_middleware_sees_the_route() -> None:
    seen: list[Any] = []

    class Record:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)
            seen.append(scope.get("route"))

    app = users_router()
    app.middleware.append(Middleware(Record))
    TestClient(app).get("/users/1")
    assert seen[0].name == "user"


class CopiesScope:
    """Middleware that calls the next app with a copy of the scope, as many do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, "copied": True}, receive, send)


def test_router_middleware_that_copies_the_scope() -> None:
    # The route is still noted in the scope the server passed in: for a route of the
    # router itself, through a mounted router with copying middleware of its own, and
    # for no match at all.
    inner = users_router()
    inner.middleware.append(Middleware(CopiesScope))
    app = users_router()
    app.mount("/api", inner, name="api")
    app.middleware.append(Middleware(CopiesScope))
    wrapper = SeesRoute(app)
    client = TestClient(wrapper)
    assert client.get("/users/1").status_code == 200
    assert client.get("/api/users/2").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert client.get("/api/nowhere").status_code == 404
    top, mounted, missing, inner_missing = wrapper.seen
    assert top is not None and (top.path_format, top.name) == ("/users/{user_id}", "user")
    assert mounted is not None
    assert (mounted.path_format, mounted.name) == ("/api/users/{user_id}", "api:user")
    assert missing is None and inner_missing is None


def test_websocket_route_through_copying_middleware() -> None:
    router = Router(middleware=[Middleware(CopiesScope)])

    @router.websocket("/echo/{room}", name="echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    wrapper = SeesRoute(router)
    with TestClient(wrapper).websocket_connect("/echo/lobby"):
        pass
    (route,) = wrapper.seen
    assert route is not None and route.path_format == "/echo/{room}"


def test_no_match_is_none_in_the_scope_too() -> None:
    # ``scope["route"]`` is set (to None), not missing, when nothing matched.
    wrapper = SeesRoute(users_router())
    seen_keys: list[bool] = []

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await wrapper(scope, receive, send)
        if scope["type"] == "http":
            seen_keys.append("route" in scope)

    client = TestClient(outer)
    assert client.get("/nowhere").status_code == 404
    assert client.post("/users/1").status_code == 405
    assert seen_keys == [True, True]
    assert wrapper.seen == [None, None]


def test_no_match_means_none() -> None:
    routes: list[Any] = []

    async def not_found(request: Request, exc: HTTPException) -> JSONResponse:
        routes.append(request.route)
        return JSONResponse({"detail": "nope"}, status_code=exc.status_code)

    app = users_router()
    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    client = TestClient(app)
    assert client.get("/nowhere").status_code == 404
    assert client.post("/users/1").status_code == 405
    assert routes == [None, None]


@pytest.mark.parametrize("prefix", ["", "/ws-api"])
def test_websocket_route(prefix: str) -> None:
    router = Router()

    @router.websocket("/echo/{room}", name="echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        route = websocket.route
        assert route is not None
        await websocket.send_json([route.path_format, route.name, route.methods])
        await websocket.close()

    app = Router([Mount(prefix, router, name="ws")]) if prefix else router
    with TestClient(app).websocket_connect(prefix + "/echo/lobby") as websocket:
        path_format, name, methods = websocket.receive_json()
    assert path_format == prefix + "/echo/{room}"
    assert name == ("ws:echo" if prefix else "echo")
    assert methods is None


def test_matched_route_is_read_only() -> None:
    route = MatchedRoute("/a/{b}", "a", ("GET",))
    with pytest.raises(AttributeError):
        route.name = "other"  # type: ignore[misc]
    assert repr(route) == "MatchedRoute(path_format='/a/{b}', name='a', methods=['GET'])"
