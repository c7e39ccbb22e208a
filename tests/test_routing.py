"""Router: matching, precedence, methods, HEAD, redirects, conversions, mounts, url_for."""

from __future__ import annotations

import sys
import threading
import uuid
from typing import Any

import pytest

from asgikit import (
    HTTPException,
    JSONResponse,
    Middleware,
    Mount,
    NoMatchFound,
    PlainTextResponse,
    Request,
    Response,
    Route,
    Router,
)
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Receive, Scope, Send


def text(value: str) -> Any:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(value)

    return endpoint


async def echo_params(request: Request) -> JSONResponse:
    params = {key: [type(value).__name__, str(value)] for key, value in request.path_params.items()}
    return JSONResponse(params)


def test_decorators_and_declarative_routes() -> None:
    router = Router([Route("/a", text("a")), Route("/b", text("b"), methods=["POST"])])

    @router.get("/c")
    async def c(request: Request) -> str:
        return "c"

    @router.put("/c")
    async def c_put(request: Request) -> str:
        return "c-put"

    router.add_route("/d", text("d"), methods=["GET", "DELETE"])
    client = TestClient(router)
    assert client.get("/a").text == "a"
    assert client.post("/b").text == "b"
    assert client.get("/c").text == "c"
    assert client.put("/c").text == "c-put"
    assert client.delete("/d").text == "d"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/items/42", {"id": ["int", "42"]}),
        ("/items/4.5", {"id": ["float", "4.5"]}),
        (
            "/items/" + "12345678-1234-5678-1234-567812345678",
            {"id": ["UUID", "12345678-1234-5678-1234-567812345678"]},
        ),
        ("/items/abc", {"id": ["str", "abc"]}),
        ("/items/a/b/c", {"rest": ["str", "a/b/c"]}),
    ],
)
def test_typed_converters(path: str, expected: dict[str, list[str]]) -> None:
    router = Router()
    router.add_route("/items/{id:int}", echo_params)
    router.add_route("/items/{id:float}", echo_params)
    router.add_route("/items/{id:uuid}", echo_params)
    router.add_route("/items/{id}", echo_params)
    router.add_route("/items/{rest:path}", echo_params)
    assert TestClient(router).get(path).json() == expected


def test_converted_values_are_typed() -> None:
    router = Router()
    seen: dict[str, Any] = {}

    @router.get("/u/{a:int}/{b:float}/{c:uuid}")
    async def endpoint(request: Request) -> None:
        seen.update(request.path_params)

    value = uuid.uuid4()
    assert TestClient(router).get(f"/u/7/2.5/{value}").status_code == 204
    assert seen == {"a": 7, "b": 2.5, "c": value}


def test_precedence_static_beats_typed_beats_str_beats_path_regardless_of_order() -> None:
    router = Router()
    # Registered in the worst order on purpose.
    router.add_route("/files/{rest:path}", text("path"))
    router.add_route("/files/{name}", text("str"))
    router.add_route("/files/{number:int}", text("int"))
    router.add_route("/files/latest", text("static"))
    client = TestClient(router)
    assert client.get("/files/latest").text == "static"
    assert client.get("/files/12").text == "int"
    assert client.get("/files/report").text == "str"
    assert client.get("/files/a/b").text == "path"


def test_registration_order_breaks_ties_and_backtracking_finds_deeper_matches() -> None:
    router = Router()
    router.add_route("/users/{id}/posts", text("first"))
    router.add_route("/users/{name}/posts", text("second"))
    router.add_route("/users/me/settings", text("me-settings"))
    router.add_route("/users/{id}/profile", text("profile"))
    client = TestClient(router)
    assert client.get("/users/9/posts").text == "first"
    assert client.get("/users/me/settings").text == "me-settings"
    # "me" goes down the static branch first, which has no "profile": backtrack.
    assert client.get("/users/me/profile").text == "profile"


def test_mixed_segments() -> None:
    router = Router()
    router.add_route("/models/{name}.{fmt}", echo_params)
    router.add_route("/v{major:int}/status", echo_params)
    client = TestClient(router)
    assert client.get("/models/bert.onnx").json() == {
        "name": ["str", "bert"],
        "fmt": ["str", "onnx"],
    }
    assert client.get("/v2/status").json() == {"major": ["int", "2"]}
    assert client.get("/vx/status").status_code == 404


def test_404_and_405_with_allow() -> None:
    router = Router()
    router.add_route("/items", text("list"), methods=["GET", "POST"])
    router.add_route("/items/{id:int}", text("one"), methods=["DELETE"])
    client = TestClient(router)
    missing = client.get("/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong = client.put("/items")
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": "Method Not Allowed"}
    assert wrong.headers["allow"] == "GET, HEAD, POST"
    assert client.get("/items/3").headers["allow"] == "DELETE"
    assert client.get("/items/x").status_code == 404


def test_405_allow_collects_every_matching_route() -> None:
    router = Router()
    router.add_route("/users/me", text("me"), methods=["GET"])
    router.add_route("/users/{id}", text("id"), methods=["PATCH"])
    response = TestClient(router).post("/users/me")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, PATCH"


def test_head_answers_get_routes_without_body() -> None:
    router = Router()
    router.add_route("/hello", text("Hello, world!"))
    router.add_route("/n/{n:int}", text("number"))
    client = TestClient(router)
    for path, length in (("/hello", "13"), ("/n/1", "6")):
        response = client.head(path)
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == length
    assert client.head("/missing").status_code == 404


def test_options_is_not_answered_automatically() -> None:
    router = Router([Route("/x", text("x"))])
    response = TestClient(router).options("/x")
    assert response.status_code == 405


def test_redirect_slashes_both_ways_keeps_query() -> None:
    router = Router()
    router.add_route("/items", text("items"))
    router.add_route("/folder/", text("folder"))
    client = TestClient(router, follow_redirects=False)
    response = client.get("/items/?page=2")
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/items?page=2"
    response = client.get("/folder")
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/folder/"
    assert TestClient(router).get("/items/").text == "items"


def test_a_slash_redirect_keeps_encoded_characters_encoded() -> None:
    # scope["path"] is decoded: "%41", "?" and "#" in a segment must go back out
    # encoded, or the redirect would lead to another route (or cut the path).
    router = Router()

    @router.get("/x/{y}")
    async def item(request: Request) -> dict[str, Any]:
        return {"y": request.path_params["y"], "url": str(request.url)}

    client = TestClient(router, follow_redirects=False)
    for raw, encoded, value in [
        ("/x/100%2541/", "/x/100%2541", "100%41"),
        ("/x/a%3Fb/", "/x/a%3Fb", "a?b"),
        ("/x/a%23b/", "/x/a%23b", "a#b"),
        ("/x/na%C3%AFve/", "/x/na%C3%AFve", "naïve"),
    ]:
        response = client.get(raw + "?k=1")
        assert response.headers["location"] == f"http://testserver{encoded}?k=1"
        followed = client.get(response.headers["location"]).json()
        assert followed == {"y": value, "url": f"http://testserver{encoded}?k=1"}


def test_redirect_slashes_can_be_disabled() -> None:
    router = Router([Route("/items", text("items"))], redirect_slashes=False)
    assert TestClient(router, follow_redirects=False).get("/items/").status_code == 404


def test_sync_endpoints_run_in_a_worker_thread() -> None:
    router = Router()
    main_thread = threading.get_ident()
    seen: list[int] = []

    @router.get("/sync")
    def sync_endpoint(request: Request) -> dict[str, str]:
        seen.append(threading.get_ident())
        return {"method": request.method}

    with TestClient(router) as client:
        assert client.get("/sync").json() == {"method": "GET"}
    assert seen and seen[0] != main_thread


@pytest.mark.parametrize(
    ("value", "status", "content_type", "body"),
    [
        ({"a": 1}, 200, "application/json", b'{"a":1}'),
        ([1, "é"], 200, "application/json", '[1,"é"]'.encode()),
        ("plain", 200, "text/plain; charset=utf-8", b"plain"),
        (b"\x00\x01", 200, None, b"\x00\x01"),
        (None, 204, None, b""),
    ],
)
def test_return_value_conversions(
    value: Any, status: int, content_type: str | None, body: bytes
) -> None:
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Any:
        return value

    response = TestClient(router).get("/")
    assert response.status_code == status
    assert response.headers.get("content-type") == content_type
    assert response.content == body


def test_endpoint_may_return_any_asgi_app() -> None:
    async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"raw"})

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> ASGIApp:
        return raw_app

    response = TestClient(router).get("/")
    assert (response.status_code, response.text) == (202, "raw")


def test_unsupported_return_value_is_a_500_with_clear_error() -> None:
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Any:
        return 42

    with pytest.raises(TypeError, match="returned int"):
        TestClient(router).get("/")
    assert TestClient(router, raise_server_exceptions=False).get("/").status_code == 500


def test_url_path_for_and_url_for() -> None:
    router = Router()

    @router.get("/users/{user_id:int}", name="user")
    async def user(request: Request) -> str:
        return str(request.url_for("user", user_id=request.path_params["user_id"] + 1))

    @router.get("/files/{rest:path}")
    async def files(request: Request) -> str:
        return "file"

    assert router.url_path_for("user", user_id=3) == "/users/3"
    assert router.url_path_for("files", rest="a/b c") == "/files/a/b%20c"
    with pytest.raises(NoMatchFound):
        router.url_path_for("nope")
    with pytest.raises(NoMatchFound):
        router.url_path_for("user", user_id="abc")
    with pytest.raises(NoMatchFound):
        router.url_path_for("user")
    with pytest.raises(NoMatchFound):
        router.url_path_for("user", user_id=1, extra=2)
    assert TestClient(router).get("/users/1").text == "http://testserver/users/2"


def test_route_names_default_to_the_endpoint_name() -> None:
    router = Router()

    @router.get("/health")
    async def health(request: Request) -> str:
        return "ok"

    assert router.url_path_for("health") == "/health"


def test_invalid_templates_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        Route("items", text("x"))
    with pytest.raises(ValueError, match="unknown converter"):
        Route("/items/{id:number}", text("x"))
    with pytest.raises(ValueError, match="appears twice"):
        Route("/{a}/{a}", text("x"))
    with pytest.raises(ValueError, match="whole last segment"):
        Route("/{rest:path}/more", text("x"))
    with pytest.raises(ValueError, match="unknown HTTP method"):
        Route("/x", text("x"), methods=["FETCH"])
    with pytest.raises(TypeError):
        Route("/x", "not callable")  # type: ignore[arg-type]


def test_routes_added_after_first_request_are_served() -> None:
    router = Router([Route("/a", text("a"))])
    client = TestClient(router)
    assert client.get("/a").text == "a"
    router.add_route("/b/{x}", text("b"))
    assert client.get("/b/1").text == "b"


# --------------------------------------------------------------------------- mounts


def scope_echo_app() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "path": scope["path"],
                "root_path": scope["root_path"],
                "params": scope.get("path_params", {}),
            }
        )
        await response(scope, receive, send)

    return app


def test_mount_any_asgi_app_sets_root_path() -> None:
    router = Router()
    router.mount("/static", scope_echo_app())
    router.mount("/orgs/{org}", scope_echo_app())
    client = TestClient(router)
    assert client.get("/static/css/site.css").json() == {
        "path": "/static/css/site.css",
        "root_path": "/static",
        "params": {},
    }
    assert client.get("/orgs/acme/repos").json() == {
        "path": "/orgs/acme/repos",
        "root_path": "/orgs/acme",
        "params": {"org": "acme"},
    }


def test_mount_router_routes_the_remainder_and_nests() -> None:
    inner = Router()

    @inner.get("/items/{id:int}", name="item")
    async def item(request: Request) -> dict[str, Any]:
        return {
            "id": request.path_params["id"],
            "version": request.path_params["version"],
            "url": str(request.url_for("api:v:item", version=request.path_params["version"], id=5)),
        }

    middle = Router([Mount("/v{version:int}", inner, name="v")])
    outer = Router()
    outer.mount("/api", middle, name="api")
    client = TestClient(outer)
    assert client.get("/api/v2/items/7").json() == {
        "id": 7,
        "version": 2,
        "url": "http://testserver/api/v2/items/5",
    }
    assert outer.url_path_for("api:v:item", version=3, id=1) == "/api/v3/items/1"
    assert client.get("/api/v2/nothing").status_code == 404


def test_routes_beat_mounts_at_the_same_prefix() -> None:
    router = Router()
    router.mount("/api", scope_echo_app())
    router.add_route("/api/health", text("health"))
    client = TestClient(router)
    assert client.get("/api/health").text == "health"
    assert client.get("/api/other").json()["root_path"] == "/api"


def test_mount_without_trailing_part_redirects_to_slash() -> None:
    router = Router([Mount("/app", scope_echo_app())])
    response = TestClient(router, follow_redirects=False).get("/app")
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/app/"


def test_mounted_router_own_middleware_and_exception_handlers() -> None:
    calls: list[str] = []

    class Tag:
        def __init__(self, app: ASGIApp, name: str) -> None:
            self.app, self.name = app, name

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            calls.append(self.name)
            await self.app(scope, receive, send)

    class Teapot(Exception):
        pass

    async def teapot_handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("short and stout", status_code=418)

    inner = Router(
        middleware=[Middleware(Tag, name="inner")], exception_handlers={Teapot: teapot_handler}
    )

    @inner.get("/brew")
    async def brew(request: Request) -> None:
        raise Teapot()

    outer = Router(middleware=[Middleware(Tag, name="outer")])
    outer.mount("/tea", inner)

    @outer.get("/brew")
    async def outer_brew(request: Request) -> None:
        raise Teapot()

    client = TestClient(outer)
    response = client.get("/tea/brew")
    assert (response.status_code, response.text) == (418, "short and stout")
    assert calls == ["outer", "inner"]
    with pytest.raises(Teapot):
        client.get("/brew")  # the outer router has no handler for it


def test_mount_middleware_option() -> None:
    class AddHeader:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def wrapped(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-mounted", b"yes")]
                await send(message)

            await self.app(scope, receive, wrapped)

    router = Router([Mount("/m", scope_echo_app(), middleware=[Middleware(AddHeader)])])
    assert TestClient(router).get("/m/x").headers["x-mounted"] == "yes"


def test_router_works_under_a_server_root_path() -> None:
    router = Router()

    @router.get("/hello/{name}", name="hello")
    async def hello(request: Request) -> str:
        return f"{request.path_params['name']} {request.url_for('hello', name='x')}"

    client = TestClient(router, root_path="/prefix")
    assert client.get("/hello/ann").text == "ann http://testserver/prefix/hello/x"


def test_unsupported_scope_type_raises() -> None:
    import anyio

    async def main() -> None:
        async def receive() -> Any:
            return {}

        async def send(message: Any) -> None:
            pass

        with pytest.raises(ValueError, match="unsupported ASGI scope type"):
            await Router()({"type": "smtp"}, receive, send)

    anyio.run(main)


def test_http_exception_headers_and_detail() -> None:
    router = Router()

    @router.get("/limited")
    async def limited(request: Request) -> None:
        raise HTTPException(429, "Slow down", headers={"Retry-After": "3"})

    response = TestClient(router).get("/limited")
    assert response.status_code == 429
    assert response.json() == {"detail": "Slow down"}
    assert response.headers["retry-after"] == "3"


def test_url_path_for_accepts_numbers_written_as_strings() -> None:
    router = Router([Route("/u/{i:int}/{f:float}", text("x"), name="u")])
    assert router.url_path_for("u", i="3", f="2.5") == "/u/3/2.5"
    with pytest.raises(NoMatchFound):
        router.url_path_for("u", i="-3", f="1")


def test_explicit_head_route_beats_the_implicit_one() -> None:
    router = Router()

    @router.get("/doc")
    async def doc(request: Request) -> Response:
        return PlainTextResponse("body")

    @router.head("/doc")
    async def doc_head(request: Request) -> Response:
        return Response(headers={"x-head": "explicit"})

    client = TestClient(router)
    assert client.get("/doc").text == "body"
    assert client.head("/doc").headers["x-head"] == "explicit"


def test_numbers_too_large_to_convert_are_no_match() -> None:
    router = Router()
    router.add_route("/i/{n:int}", echo_params)
    router.add_route("/f/{x:float}", echo_params)
    client = TestClient(router)
    huge = client.get("/i/" + "9" * 5000)
    # Python 3.11+ refuses to convert that many digits: no match rather than a 500.
    assert huge.status_code == (404 if hasattr(sys, "get_int_max_str_digits") else 200)
    assert client.get("/f/" + "9" * 400).status_code == 404  # not finite
    assert client.get("/f/" + "9" * 400 + ".5").status_code == 404


@pytest.mark.parametrize("host", ["evil.com?", "evil.com/x", "x@evil.com"])
def test_slash_redirects_never_point_at_a_host_that_is_not_a_host(host: str) -> None:
    router = Router([Route("/hello", text("hi"))])
    response = TestClient(router, follow_redirects=False).get("/hello/?a=1", headers={"host": host})
    assert response.status_code == 307
    assert response.headers["location"] == "/hello?a=1"
